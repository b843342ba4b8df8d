"""The header's one search box: companies, contacts and leads matching typed text.

Three queries, each scoped to the entity and limited (`limit + 1` rows, to know whether more
match). The text is split into words (at most `MAX_WORDS`); a row matches when every word is in
one of its searched texts: a company's name, a contact's full name (first and last) or email, a
lead's title. So "ada love" finds Ada Lovelace, and the word order does not matter.

Each word is an `icontains` (`UPPER(expr) LIKE UPPER('%word%')`) on exactly the expressions the
trigram (pg_trgm GIN) indexes of migration crm 0007 cover: `UPPER(name)` of companies,
`UPPER(first_name || ' ' || last_name)` and `UPPER(email)` of contacts, `UPPER(title)` of leads,
each led by the entity id; so PostgreSQL answers from the index without reading the table. Words
shorter than `MIN_SUBSTRING` letters carry no trigram to look up: they match at the start
(`istartswith`, an anchored LIKE the same indexes answer). `%` and `_` are literal (Django
escapes them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import CharField, F, Func, Q, QuerySet, Value

from axiomatic.models import Entity
from axiomatic.ordering import first_matches, order_matches
from crm.models import Company, Contact, Lead

GROUP_LIMIT = 8
MIN_QUERY_LENGTH = 2
MIN_SUBSTRING = 3
MAX_WORDS = 5
MAX_QUERY_LENGTH = 200


@dataclass
class SearchGroup:
    key: str
    label: str
    rows: list = field(default_factory=list)
    has_more: bool = False


@dataclass
class SearchResults:
    text: str
    groups: list[SearchGroup] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(len(group.rows) for group in self.groups)


def search_text_clean(text: str) -> str:
    """The typed text as searched: no NUL (PostgreSQL text cannot hold it), trimmed, bounded."""
    return " ".join(text.replace("\x00", "").split())[:MAX_QUERY_LENGTH]


def search_words(text: str) -> list[str]:
    return search_text_clean(text).split()[:MAX_WORDS]


def _word_q(word: str, columns: tuple[str, ...]) -> Q:
    lookup = "icontains" if len(word) >= MIN_SUBSTRING else "istartswith"
    condition = Q()
    for column in columns:
        condition |= Q(**{f"{column}__{lookup}": word})
    return condition


def _matching(queryset: QuerySet, words: list[str], columns: tuple[str, ...]) -> QuerySet:
    for word in words:
        queryset = queryset.filter(_word_q(word, columns))
    return queryset


def _group(key: str, label: str, queryset: QuerySet, limit: int) -> SearchGroup:
    rows = list(queryset[: limit + 1])
    return SearchGroup(key=key, label=label, rows=rows[:limit], has_more=len(rows) > limit)


def search_companies(*, entity: Entity, words: list[str], limit: int | None = None) -> QuerySet[Company]:
    """The entity's companies matching every word, by name; with `limit`, narrowed to the first
    `limit` of them the fast way (`axiomatic.ordering.first_matches`)."""
    matches = _matching(Company.objects.for_entity(entity), words, ("name",)).order_by("name", "id")
    order = [("name", False), ("id", False)]
    return order_matches(matches, order) if limit is None else first_matches(matches, order, limit)


def contact_search_name() -> Func:
    """`first_name || ' ' || last_name`, written as the contacts' name trigram index is."""
    return Func(
        F("first_name"),
        Value(" "),
        F("last_name"),
        template="(%(expressions)s)",
        arg_joiner=" || ",
        output_field=CharField(),
    )


def search_contacts(*, entity: Entity, words: list[str], limit: int | None = None) -> QuerySet[Contact]:
    """The entity's contacts matching every word (full name or email), by name; `limit` as for
    `search_companies`."""
    contacts = Contact.objects.for_entity(entity).alias(search_name=contact_search_name())
    matches = _matching(contacts, words, ("search_name", "email")).order_by("last_name", "first_name", "id")
    order = [("last_name", False), ("first_name", False), ("id", False)]
    return order_matches(matches, order) if limit is None else first_matches(matches, order, limit)


def search_leads(*, entity: Entity, words: list[str]) -> QuerySet[Lead]:
    leads = _matching(Lead.objects.for_entity(entity), words, ("title",))
    return leads.select_related("stage").order_by("-updated_at", "id")


def search_all(*, entity: Entity, text: str, limit: int = GROUP_LIMIT) -> SearchResults:
    """Companies, contacts and leads of `entity` matching `text`, at most `limit` of each.

    Text shorter than `MIN_QUERY_LENGTH` characters searches nothing (no query is made).
    """
    text = search_text_clean(text)
    if len(text) < MIN_QUERY_LENGTH:
        return SearchResults(text=text)
    words = search_words(text)
    return SearchResults(
        text=text,
        groups=[
            _group("companies", "Companies", search_companies(entity=entity, words=words, limit=limit + 1), limit),
            _group("contacts", "Contacts", search_contacts(entity=entity, words=words, limit=limit + 1), limit),
            _group("leads", "Leads", search_leads(entity=entity, words=words), limit),
        ],
    )
