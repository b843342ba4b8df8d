"""Mailbox providers behind one interface (`crm.providers.base.MailProvider`)."""

from __future__ import annotations

from crm.providers.base import MailProvider
from crm.providers.gmail import GmailProvider
from crm.providers.outlook import OutlookProvider

PROVIDERS: dict[str, type[MailProvider]] = {"gmail": GmailProvider, "outlook": OutlookProvider}


def provider_for(channel: str, *, access_token: str) -> MailProvider:
    """A client for `channel` ("gmail" | "outlook") acting with `access_token`."""
    try:
        provider_class = PROVIDERS[channel]
    except KeyError:
        raise ValueError(f"Unknown email channel {channel!r}") from None
    return provider_class(access_token=access_token)
