"""Currency codes: money is always tagged with an ISO 4217 code, checked in one place.

Used as a model validator (entities' default currency, leads), so the admin and the operator
commands refuse what the API refuses.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError

# Active ISO 4217 alphabetic codes (funds and precious metals included; XTS/XXX are not currencies).
_ISO_4217_CODES = """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP
    BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB
    EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY
    KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR
    MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB
    RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD
    TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XAG XAU XBA XBB XBC XBD XCD XCG
    XDR XOF XPD XPF XPT XSU XUA YER ZAR ZMW ZWG ZWL
"""
ISO_4217 = frozenset(_ISO_4217_CODES.split())


def validate_currency_code(value: str) -> None:
    if value not in ISO_4217:
        raise ValidationError(f"{value!r} is not an ISO 4217 currency code such as USD or EUR.")
