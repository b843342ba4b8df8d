"""The FilterSets of the marketing lists, below both the API and any page that lists them."""

from __future__ import annotations

import django_filters

from axiomatic.filters import StrictFilterSet, SubstringFilter
from marketing.models import MarketingList, MarketingListMember, MemberSource, MemberStatus


class MarketingListFilter(StrictFilterSet):
    q = SubstringFilter(field_name="name", help_text="Case-insensitive substring of the name")

    class Meta:
        model = MarketingList
        fields = ["q"]


class MarketingListMemberFilter(StrictFilterSet):
    status = django_filters.ChoiceFilter(choices=MemberStatus.choices, help_text="subscribed or unsubscribed")
    source = django_filters.ChoiceFilter(choices=MemberSource.choices, help_text="How the member was added")

    class Meta:
        model = MarketingListMember
        fields = ["status", "source"]
