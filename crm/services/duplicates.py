"""Duplicate detection: the normalised keys, the pairs kept on write, dismissals and rebuilds.

Why a table of pairs: comparing every record with every other one at request time does not fit
a page's time on a million rows. Instead each record carries normalised keys in indexed columns
(`name_key`, `phone_key`, `email_key`, `website_host`: a PostgreSQL trigger keeps them whatever
writes the row, COPY included; on SQLite the model's `pre_save` does), and every service that
writes a contact, a membership or a company calls `contacts_refresh` / `companies_refresh` in the
same transaction: the record's pairs are deleted and found again by index lookups (equal keys;
trigram similarity of the name among the same company's contacts, or through the trigram index
for companies). Similar names at a company larger than `SIMILAR_AT_COMPANY_LIMIT` people, and
everything a bulk write touched, are compared by the `crm.refresh_duplicates` task queued on
commit, set-based (one statement per 500 contacts, every colleague at every company): a request
never pays for a huge company, and no company is too large to be compared. `GET .../duplicates`
is then one indexed page over the pairs.

Reasons and weights (a pair's score is 1 − Π(1 − weight) over its reasons, so more reasons score
higher, and every score is in 0..1):

- contacts: `similar_email` (equal after lower-casing and, for gmail.com / googlemail.com,
  dropping dots and `+tags` in the local part), `same_name_same_company`, `same_phone` (the same
  digits, at least 6), `similar_name` (trigram similarity ≥ 0.8 of the full name, different
  names, sharing a company);
- companies: `same_website_host` (website, else domain; without `www.`), `same_name` (without
  case, punctuation and legal suffixes such as Inc, Ltd, LLC, GmbH, SA, BV), `same_phone`,
  `similar_name` (trigram similarity ≥ 0.8 of the normalised names).

A key held by more than `COMMON_KEY_LIMIT` records (a switchboard number, a placeholder name)
says nothing about any two of them and is ignored. A dismissed pair is never stored again.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable
from typing import Any

from django.db import connection, transaction
from django.db.models import F, FloatField, Func, Q, Value

from axiomatic import errors
from axiomatic.db import is_postgres
from crm.models import (
    Company,
    CompanyDuplicate,
    CompanyMembership,
    Contact,
    ContactDuplicate,
    DuplicateDismissal,
)
from crm.models.duplicates import DuplicateKind
from crm.models.keys import company_keys, contact_keys

logger = logging.getLogger("crm.duplicates")

SIMILARITY = 0.8
COMMON_KEY_LIMIT = 100
CONTACT_WEIGHTS = {"similar_email": 0.9, "same_name_same_company": 0.85, "same_phone": 0.6, "similar_name": 0.6}
COMPANY_WEIGHTS = {"same_website_host": 0.9, "same_name": 0.85, "same_phone": 0.6, "similar_name": 0.6}

# --- trigram similarity (pg_trgm's on PostgreSQL; the same arithmetic in Python for SQLite) -------

_WORD = re.compile(r"[^\W_]+")


def _trigrams(text: str) -> set[str]:
    grams: set[str] = set()
    for word in _WORD.findall((text or "").lower()):
        padded = f"  {word} "
        grams.update(padded[i : i + 3] for i in range(len(padded) - 2))
    return grams


def trigram_similarity(a: str | None, b: str | None) -> float:
    """pg_trgm's `similarity(a, b)`: shared trigrams over all trigrams of the two."""
    first, second = _trigrams(a or ""), _trigrams(b or "")
    if not first or not second:
        return 0.0
    return len(first & second) / len(first | second)


def register_sqlite_functions(sender, connection, **kwargs) -> None:
    """`connection_created`: give SQLite (the demo) the `similarity()` PostgreSQL has."""
    if connection.vendor == "sqlite":
        connection.connection.create_function("similarity", 2, trigram_similarity, deterministic=True)


class Similarity(Func):
    function = "similarity"
    output_field = FloatField()


# --- scoring ----------------------------------------------------------------------------------------


def score_of(reasons: Iterable[str], weights: dict[str, float]) -> float:
    """1 − Π(1 − weight): one strong reason scores high, several reasons higher still (≤ 1)."""
    remaining = 1.0
    for reason in reasons:
        remaining *= 1 - weights[reason]
    return round(1 - remaining, 4)


def _ordered(reasons: set[str], weights: dict[str, float]) -> list[str]:
    return sorted(reasons, key=lambda reason: (-weights[reason], reason))


def _pair(a: uuid.UUID, b: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID]:
    return (a, b) if str(a) < str(b) else (b, a)


def _equal_keys(queryset, keys: dict[str, tuple[str | None, str]], exclude: uuid.UUID) -> list[tuple]:
    """(other id, reason) for every record sharing one of `keys` ({field: (value, reason)}), a key
    too common to mean anything left out: one statement on PostgreSQL (a UNION ALL of one
    index lookup per key, each limited), one per key where compound statements cannot be limited."""
    lookups = []
    for field, (value, reason) in keys.items():
        if value:
            # No ORDER BY (the models' default orders would walk the name index instead of the key's).
            matches = queryset.filter(**{field: value}).exclude(pk=exclude).order_by()
            lookups.append(matches.annotate(reason=Value(reason)).values_list("pk", "reason")[:COMMON_KEY_LIMIT])
    if not lookups:
        return []
    if connection.features.supports_slicing_ordering_in_compound and len(lookups) > 1:
        rows = list(lookups[0].union(*lookups[1:], all=True))
    else:
        rows = [row for lookup in lookups for row in lookup]
    per_reason: dict[str, int] = {}
    for _, reason in rows:
        per_reason[reason] = per_reason.get(reason, 0) + 1
    return [(pk, reason) for pk, reason in rows if per_reason[reason] < COMMON_KEY_LIMIT]


def _dismissed(entity_id, kind: str, pairs: Iterable[tuple]) -> set[tuple]:
    pairs = list(pairs)
    if not pairs:
        return set()
    ids = {pk for pair in pairs for pk in pair}
    rows = DuplicateDismissal.objects.filter(entity_id=entity_id, kind=kind, first_id__in=ids, second_id__in=ids)
    return set(rows.values_list("first_id", "second_id"))


def _store(model, *, entity_id, kind: str, found: dict[tuple, set[str]], weights: dict[str, float]) -> int:
    dismissed = _dismissed(entity_id, kind, found)
    rows = [
        model(
            entity_id=entity_id,
            first_id=first,
            second_id=second,
            reasons=_ordered(reasons, weights),
            score=score_of(reasons, weights),
        )
        for (first, second), reasons in found.items()
        if (first, second) not in dismissed
    ]
    model.objects.bulk_create(rows, ignore_conflicts=True)  # a concurrent refresh may have stored it
    return len(rows)


# --- contacts -----------------------------------------------------------------------------------


def _contact_candidates(contact: dict, deferred: set) -> dict[tuple, set[str]]:
    pk, entity_id = contact["id"], contact["entity_id"]
    same_entity = Contact.objects.filter(entity_id=entity_id)
    found: dict[tuple, set[str]] = {}

    def add(other, reason: str) -> None:
        found.setdefault(_pair(pk, other), set()).add(reason)

    keys = {
        "email_key": (contact["email_key"], "similar_email"),
        "phone_key": (contact["phone_key"], "same_phone"),
    }
    for other, reason in _equal_keys(same_entity, keys, pk):
        add(other, reason)
    name = contact["name_key"]
    if name:
        companies = CompanyMembership.objects.filter(contact_id=pk).values("company_id")
        memberships = CompanyMembership.objects.filter(entity_id=entity_id, company_id__in=companies)
        colleagues = memberships.exclude(contact_id=pk).values("contact_id")
        candidates = same_entity.filter(pk__in=colleagues).order_by()
        # A write compares its name with every colleague's (similar names) only at companies of at
        # most SIMILAR_AT_COMPANY_LIMIT people; at a larger one it finds equal names here, through
        # the (entity, name_key) index, and leaves the similar ones to the refresh task queued
        # when it commits (one set-based statement, so a request never pays for a huge company).
        if memberships[: SIMILAR_AT_COMPANY_LIMIT + 1].count() <= SIMILAR_AT_COMPANY_LIMIT or not is_postgres():
            candidates = candidates.annotate(similarity=Similarity(F("name_key"), Value(name))).filter(
                Q(name_key=name) | Q(similarity__gte=SIMILARITY)
            )
        else:
            candidates = candidates.filter(name_key=name)
            deferred.add(pk)
        similar = candidates.values_list("pk", "name_key")
        for other, other_name in similar:
            add(other, "same_name_same_company" if other_name == name else "similar_name")
    return found


def contacts_refresh(*, contact_ids: Iterable, new: bool = False) -> None:
    """Find again the pairs of these contacts (after a write to them or their memberships).

    Runs inside the caller's transaction, so the pairs change with the record or not at all. A
    contact at a company larger than `SIMILAR_AT_COMPANY_LIMIT` gets its equal-key pairs here and
    its similar names from the refresh task queued on commit (`_contacts_refresh_set_based`).
    """
    ids = [pk for pk in dict.fromkeys(contact_ids) if pk is not None]
    if not ids:
        return
    deferred: set = set()
    with transaction.atomic():
        if not new:  # a record created in this transaction has no pairs yet
            ContactDuplicate.objects.filter(Q(first_id__in=ids) | Q(second_id__in=ids)).delete()
        rows = (
            Contact.objects.filter(pk__in=ids)
            .order_by()
            .values("id", "entity_id", "name_key", "phone_key", "email_key")
        )
        by_entity: dict[Any, dict[tuple, set[str]]] = {}
        for row in rows:
            found = by_entity.setdefault(row["entity_id"], {})
            for pair, reasons in _contact_candidates(row, deferred).items():
                found.setdefault(pair, set()).update(reasons)
            if row["id"] in deferred:
                args = (str(row["entity_id"]), "contact", [str(row["id"])])
                transaction.on_commit(lambda args=args: _refresh_enqueue(*args), robust=True)
        for entity_id, found in by_entity.items():
            _store(
                ContactDuplicate, entity_id=entity_id, kind=DuplicateKind.CONTACT, found=found, weights=CONTACT_WEIGHTS
            )


def _batch_equal_key_sql(key: str, reason: str, weight: float) -> str:
    """Pairs of the batch's contacts (%(ids)s) sharing `key`, a key held by more than
    COMMON_KEY_LIMIT other contacts left out (as `_equal_keys` does for one)."""
    return f"""
  SELECT a.entity_id, LEAST(a.id, b.id) AS first_id, GREATEST(a.id, b.id) AS second_id,
    '{reason}' AS reason, {weight}::float8 AS weight
  FROM crm_contact a
  CROSS JOIN LATERAL (SELECT array_agg(x.id) AS ids FROM (
    SELECT x.id FROM crm_contact x WHERE x.entity_id = a.entity_id AND x.{key} = a.{key}
    LIMIT {COMMON_KEY_LIMIT + 1}) x) h
  CROSS JOIN LATERAL unnest(h.ids) AS b(id)
  WHERE a.id = ANY(%(ids)s::uuid[]) AND a.{key} IS NOT NULL AND cardinality(h.ids) <= {COMMON_KEY_LIMIT}
    AND b.id <> a.id"""


# The batch's contacts against every colleague at every company they belong to, whatever its size:
# linear in (contacts × colleagues), all in the database.
_BATCH_COLLEAGUES_SQL = f"""
  SELECT a.entity_id, LEAST(a.id, c.id) AS first_id, GREATEST(a.id, c.id) AS second_id,
    CASE WHEN a.name_key = c.name_key THEN 'same_name_same_company' ELSE 'similar_name' END AS reason,
    CASE WHEN a.name_key = c.name_key THEN {CONTACT_WEIGHTS["same_name_same_company"]}
         ELSE {CONTACT_WEIGHTS["similar_name"]} END::float8 AS weight
  FROM crm_contact a
  JOIN crm_companymembership ma ON ma.contact_id = a.id
  JOIN crm_companymembership mc ON mc.company_id = ma.company_id AND mc.contact_id <> a.id
  JOIN crm_contact c ON c.id = mc.contact_id
  WHERE a.id = ANY(%(ids)s::uuid[]) AND a.name_key IS NOT NULL AND c.name_key IS NOT NULL
    AND (a.name_key = c.name_key OR similarity(a.name_key, c.name_key) >= {SIMILARITY})"""


def _contacts_refresh_set_based(ids: list[str]) -> None:
    """Every pair of these contacts again in two statements (PostgreSQL; the refresh task's path):
    their pairs deleted, then found by equal keys and among all their colleagues at once — the
    same reasons and scores as `contacts_refresh`, with no company too large to compare."""
    with transaction.atomic(), connection.cursor() as cursor:
        ContactDuplicate.objects.filter(Q(first_id__in=ids) | Q(second_id__in=ids)).delete()
        candidates = [
            _batch_equal_key_sql("email_key", "similar_email", CONTACT_WEIGHTS["similar_email"]),
            _batch_equal_key_sql("phone_key", "same_phone", CONTACT_WEIGHTS["same_phone"]),
            _BATCH_COLLEAGUES_SQL,
        ]
        statement = _insert_pairs_sql("crm_contactduplicate", DuplicateKind.CONTACT, candidates, distinct=True)
        cursor.execute(statement + " ON CONFLICT (first_id, second_id) DO NOTHING", {"ids": ids})


_MEMBERS = (
    "WITH members AS (SELECT c.id, c.name_key FROM crm_companymembership m JOIN crm_contact c ON c.id = m.contact_id "
    "WHERE m.company_id = %s AND c.name_key IS NOT NULL) "
)
_SIMILAR_AT_COMPANY = (
    _MEMBERS + "SELECT a.id, b.id, NULL FROM members a JOIN members b ON a.id < b.id AND a.name_key <> b.name_key "
    "WHERE similarity(a.name_key, b.name_key) >= %s"
)
SIMILAR_AT_COMPANY_LIMIT = 300
REFRESH_IDS_PER_TASK = 2_000  # one refresh task's contacts (a huge company's are queued in several)


def _reason_order_sql(weights: dict[str, float]) -> str:
    cases = " ".join(f"WHEN '{reason}' THEN {weight}" for reason, weight in weights.items())
    return f"CASE r {cases} END"


# Equal names at one company, upserted by the database in one statement: the company's members
# grouped by name (groups of 2 to COMMON_KEY_LIMIT), paired, dismissed pairs left out, and an
# existing pair of the two gaining the reason (its reasons kept in weight order, its score raised).
_SAME_NAME_AT_COMPANY_UPSERT = f"""
WITH members AS MATERIALIZED (
  SELECT c.id, c.name_key FROM crm_companymembership m JOIN crm_contact c ON c.id = m.contact_id
  WHERE m.company_id = %(company)s AND c.name_key IS NOT NULL
), names AS (
  SELECT array_agg(id ORDER BY id) AS ids FROM members GROUP BY name_key
  HAVING count(*) BETWEEN 2 AND {COMMON_KEY_LIMIT}
), found AS (
  SELECT n.ids[i] AS first_id, n.ids[j] AS second_id
  FROM names n, generate_series(1, cardinality(n.ids)) AS i, generate_series(i + 1, cardinality(n.ids)) AS j
)
INSERT INTO crm_contactduplicate AS p (id, entity_id, created_at, updated_at, first_id, second_id, reasons, score)
SELECT gen_random_uuid(), %(entity)s, now(), now(), first_id, second_id, '["same_name_same_company"]'::jsonb,
  {CONTACT_WEIGHTS["same_name_same_company"]}
FROM found f
WHERE NOT EXISTS (SELECT 1 FROM crm_duplicatedismissal d WHERE d.entity_id = %(entity)s AND d.kind = 'contact'
                  AND d.first_id = f.first_id AND d.second_id = f.second_id)
ON CONFLICT (first_id, second_id) DO UPDATE SET
  reasons = (SELECT jsonb_agg(r ORDER BY {_reason_order_sql(CONTACT_WEIGHTS)} DESC, r)
             FROM (SELECT DISTINCT jsonb_array_elements_text(p.reasons || EXCLUDED.reasons) AS r) AS x),
  score = CASE WHEN p.reasons ? 'same_name_same_company' THEN p.score
               ELSE round((1 - (1 - p.score) * (1 - EXCLUDED.score))::numeric, 4)::float8 END,
  updated_at = now()
"""


def _same_names_python(company_id) -> dict[tuple, set[str]]:
    """The company's members in name order, grouped here (linear, whatever the statistics say)."""
    members = (
        Contact.objects.filter(memberships__company_id=company_id, name_key__isnull=False)
        .order_by("name_key", "pk")
        .values_list("pk", "name_key")
    )
    found: dict[tuple, set[str]] = {}
    group: list = []
    for pk, name in [*members, (None, None)]:
        if group and name != group[0][1]:
            if len(group) <= COMMON_KEY_LIMIT:
                for index, (first, _) in enumerate(group):
                    for second, _ in group[index + 1 :]:
                        found.setdefault(_pair(first, second), set()).add("same_name_same_company")
            group = []
        group.append((pk, name))
    return found


def _add_pairs(found: dict[tuple, set[str]], *, entity_id) -> None:
    """Store `found` contact pairs, merged with the reasons the same pairs already have."""
    if not found:
        return
    firsts, seconds = {a for a, _ in found}, {b for _, b in found}
    existing = ContactDuplicate.objects.filter(first_id__in=firsts, second_id__in=seconds)
    replaced = []
    for pk, first, second, reasons in existing.values_list("pk", "first_id", "second_id", "reasons"):
        if (first, second) in found:
            found[(first, second)].update(reasons)
            replaced.append(pk)
    ContactDuplicate.objects.filter(pk__in=replaced).delete()
    _store(ContactDuplicate, entity_id=entity_id, kind=DuplicateKind.CONTACT, found=found, weights=CONTACT_WEIGHTS)


def company_contacts_refresh(*, company_id, entity_id) -> None:
    """After a company gained memberships at once (a company merge): the pairs its contacts now
    form by sharing it, added to the pairs they had (a merge only adds shared companies, so no pair
    goes away). Equal names: on PostgreSQL one upsert the database groups and pairs (a merge of
    10,000 memberships may pair tens of thousands of namesakes: no row of them passes through
    Python), elsewhere grouped in name order here. Similar names are compared here when the company
    has at most `SIMILAR_AT_COMPANY_LIMIT` contacts; beyond that, comparing every pair of a huge
    company's contacts does not belong in a merge's transaction: refresh tasks queued on commit
    compare them (`_contacts_refresh_set_based`, `REFRESH_IDS_PER_TASK` contacts each)."""
    if is_postgres():
        # The pairs come from each name's sorted ids (array subscripts), never from joining the
        # members with themselves: the statistics of a company that just gained its memberships
        # say "a few rows", and a nested loop over them compared 10⁸ pairs, while forcing hash
        # joins instead read every contact of the entity to find the members.
        with connection.cursor() as cursor:
            cursor.execute(_SAME_NAME_AT_COMPANY_UPSERT, {"company": company_id, "entity": entity_id})
        found: dict[tuple, set[str]] = {}
    else:
        found = _same_names_python(company_id)
    members = CompanyMembership.objects.filter(company_id=company_id)
    if is_postgres() and members[: SIMILAR_AT_COMPANY_LIMIT + 1].count() > SIMILAR_AT_COMPANY_LIMIT:
        ids = [str(pk) for pk in members.order_by().values_list("contact_id", flat=True)]
        for start in range(0, len(ids), REFRESH_IDS_PER_TASK):
            args = (str(entity_id), "contact", ids[start : start + REFRESH_IDS_PER_TASK])
            transaction.on_commit(lambda args=args: _refresh_enqueue(*args), robust=True)
    else:
        to_uuid = Contact._meta.pk.to_python
        with connection.cursor() as cursor:
            cursor.execute(
                _SIMILAR_AT_COMPANY, [Company._meta.pk.get_db_prep_value(company_id, connection), SIMILARITY]
            )
            for first, second, _ in cursor.fetchall():
                found.setdefault(_pair(to_uuid(first), to_uuid(second)), set()).add("similar_name")
    _add_pairs(found, entity_id=entity_id)


# --- companies ------------------------------------------------------------------------------------


def _similar_company_names(entity_id, name: str, pk) -> list:
    if is_postgres():
        # The trigram index on name_key answers `%` (threshold set for this transaction only);
        # similarity() then keeps exactly those at or above SIMILARITY.
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('pg_trgm.similarity_threshold', %s, true)", [str(SIMILARITY)])
            cursor.execute(
                "SELECT id FROM crm_company WHERE name_key %% %s AND entity_id = %s AND id <> %s "
                "AND name_key <> %s AND similarity(name_key, %s) >= %s LIMIT %s",
                [name, entity_id, pk, name, name, SIMILARITY, COMMON_KEY_LIMIT],
            )
            return [row[0] for row in cursor.fetchall()]
    return list(
        Company.objects.filter(entity_id=entity_id)
        .exclude(pk=pk)
        .exclude(name_key=name)
        .annotate(similarity=Similarity(F("name_key"), Value(name)))
        .filter(similarity__gte=SIMILARITY)
        .order_by()
        .values_list("pk", flat=True)[:COMMON_KEY_LIMIT]
    )


def _company_candidates(company: dict) -> dict[tuple, set[str]]:
    pk, entity_id = company["id"], company["entity_id"]
    same_entity = Company.objects.filter(entity_id=entity_id)
    found: dict[tuple, set[str]] = {}
    keys = {
        "website_host": (company["website_host"], "same_website_host"),
        "name_key": (company["name_key"], "same_name"),
        "phone_key": (company["phone_key"], "same_phone"),
    }
    for other, reason in _equal_keys(same_entity, keys, pk):
        found.setdefault(_pair(pk, other), set()).add(reason)
    if company["name_key"]:
        for other in _similar_company_names(entity_id, company["name_key"], pk):
            found.setdefault(_pair(pk, other), set()).add("similar_name")
    return found


def companies_refresh(*, company_ids: Iterable, new: bool = False) -> None:
    """Find again the pairs of these companies (after a write to them), in the caller's transaction."""
    ids = [pk for pk in dict.fromkeys(company_ids) if pk is not None]
    if not ids:
        return
    with transaction.atomic():
        if not new:  # a record created in this transaction has no pairs yet
            CompanyDuplicate.objects.filter(Q(first_id__in=ids) | Q(second_id__in=ids)).delete()
        rows = (
            Company.objects.filter(pk__in=ids)
            .order_by()
            .values("id", "entity_id", "name_key", "phone_key", "website_host")
        )
        by_entity: dict[Any, dict[tuple, set[str]]] = {}
        for row in rows:
            found = by_entity.setdefault(row["entity_id"], {})
            for pair, reasons in _company_candidates(row).items():
                found.setdefault(pair, set()).update(reasons)
        for entity_id, found in by_entity.items():
            _store(
                CompanyDuplicate, entity_id=entity_id, kind=DuplicateKind.COMPANY, found=found, weights=COMPANY_WEIGHTS
            )


def records_written(model, *, created: list, updated: list, entity_id=None) -> None:
    """After a bulk write of contacts or companies around the single-record services (the import and
    batch engine, which must stay at a few queries per item): their pairs are found again by a task
    queued when the write commits (`crm.refresh_duplicates`, in batches), not in the request. On
    SQLite (the demo: no trigger, no worker) keys and pairs are done here. Other models: nothing."""
    if model not in (Contact, Company) or not (created or updated):
        return
    ids = [str(pk) for pk in [*created, *updated]]
    if not is_postgres():
        duplicates_refresh_ids(model_name=model._meta.model_name, ids=ids)
        return
    entity = entity_id or model.objects.filter(pk=ids[0]).values_list("entity_id", flat=True).first()
    args = (str(entity), model._meta.model_name, ids)
    transaction.on_commit(lambda: _refresh_enqueue(*args), robust=True)


# The refresh's priority on the Redis broker (kombu: 0 is first, the default; 9 is last): a worker
# takes every other queued task first, so an import's continuations, emails and webhooks never
# wait behind the pairs of the rows the import just wrote.
REFRESH_PRIORITY = 9


def _refresh_enqueue(entity_id: str, model_name: str, ids: list[str]) -> None:
    """Queue the refresh; a broker that is down leaves the pairs to the next write or a rebuild."""
    from crm.tasks import refresh_duplicates  # crm.tasks imports the services

    try:
        refresh_duplicates.apply_async((entity_id, model_name, ids), priority=REFRESH_PRIORITY)
    except Exception as exc:
        logger.warning("Could not queue the duplicate refresh of %s %ss (%s)", len(ids), model_name, type(exc).__name__)


def duplicates_refresh_ids(*, model_name: str, ids: list[str]) -> None:
    """Keys (where no trigger keeps them) and pairs of these records, 500 per transaction."""
    model = Contact if model_name == "contact" else Company
    keys_of = contact_keys if model is Contact else company_keys
    for start in range(0, len(ids), 500):
        batch = ids[start : start + 500]
        with transaction.atomic():
            if not is_postgres():
                for row in model.objects.filter(pk__in=batch):
                    model.objects.filter(pk=row.pk).update(**keys_of(row))
            if model is Contact and is_postgres():
                _contacts_refresh_set_based(batch)
            elif model is Contact:
                contacts_refresh(contact_ids=batch)
            else:
                companies_refresh(company_ids=batch)


# --- dismissals -------------------------------------------------------------------------------------

PAIR_MODELS = {DuplicateKind.CONTACT: (Contact, ContactDuplicate), DuplicateKind.COMPANY: (Company, CompanyDuplicate)}


def duplicates_dismiss(*, entity, kind: str, ids: list) -> None:
    """Remember that these two records are not duplicates: the pair is removed and never stored again.

    Two distinct ids of the entity (400 otherwise; another entity's id reads as missing, 400 too,
    since it is an id inside the body). Dismissing twice is harmless.
    """
    model, pair_model = PAIR_MODELS[kind]
    if len(ids) != 2 or ids[0] == ids[1]:
        raise errors.Invalid("ids must name two different records.", field="ids")
    found = set(model.objects.for_entity(entity).filter(pk__in=ids).values_list("pk", flat=True))
    if len(found) != 2:
        raise errors.Invalid(f"No {kind} with that id exists in this entity.", field="ids")
    first, second = _pair(*ids)
    with transaction.atomic():
        DuplicateDismissal.objects.get_or_create(entity_id=entity.pk, kind=kind, first_id=first, second_id=second)
        pair_model.objects.filter(entity_id=entity.pk, first_id=first, second_id=second).delete()


# --- rebuild ----------------------------------------------------------------------------------------


def _equal_pairs_sql(table: str, key: str, reason: str, weight: float) -> str:
    """Pairs of the entity (%(entity)s) sharing `key`, in groups of 2 to COMMON_KEY_LIMIT rows."""
    return f"""
  SELECT a.entity_id, a.id AS first_id, b.id AS second_id, '{reason}' AS reason, {weight}::float8 AS weight
  FROM (SELECT {key} FROM {table} WHERE entity_id = %(entity)s AND {key} IS NOT NULL GROUP BY 1
        HAVING count(*) BETWEEN 2 AND {COMMON_KEY_LIMIT}) g
  JOIN {table} a ON a.entity_id = %(entity)s AND a.{key} = g.{key}
  JOIN {table} b ON b.entity_id = %(entity)s AND b.{key} = g.{key} AND a.id < b.id"""


_COLLEAGUES_SQL = f"""
  SELECT DISTINCT a.entity_id, a.id AS first_id, b.id AS second_id,
    CASE WHEN a.name_key = b.name_key THEN 'same_name_same_company' ELSE 'similar_name' END AS reason,
    CASE WHEN a.name_key = b.name_key THEN {CONTACT_WEIGHTS["same_name_same_company"]}
         ELSE {CONTACT_WEIGHTS["similar_name"]} END::float8 AS weight
  FROM crm_companymembership ma
  JOIN crm_companymembership mb ON mb.company_id = ma.company_id AND ma.contact_id < mb.contact_id
  JOIN crm_contact a ON a.id = ma.contact_id
  JOIN crm_contact b ON b.id = mb.contact_id
  WHERE ma.entity_id = %(entity)s AND a.name_key IS NOT NULL AND b.name_key IS NOT NULL
    AND (a.name_key = b.name_key OR similarity(a.name_key, b.name_key) >= {SIMILARITY})"""
_SIMILAR_COMPANIES_SQL = f"""
  SELECT a.entity_id, a.id AS first_id, b.id AS second_id, 'similar_name' AS reason,
    {COMPANY_WEIGHTS["similar_name"]}::float8 AS weight
  FROM crm_company a JOIN crm_company b ON b.name_key %% a.name_key AND b.entity_id = a.entity_id AND a.id < b.id
  WHERE a.entity_id = %(entity)s AND a.name_key IS NOT NULL AND b.name_key <> a.name_key
    AND similarity(a.name_key, b.name_key) >= {SIMILARITY}"""
SIMILAR_COMPANIES_REBUILD_LIMIT = 200_000  # one trigram probe per company: beyond this, found on write


def _insert_pairs_sql(table: str, kind: str, candidates: list[str], *, distinct: bool = False) -> str:
    union = " UNION ALL ".join(candidates)
    source = f"SELECT DISTINCT * FROM ({union}) AS found" if distinct else union
    return f"""
INSERT INTO {table} (id, entity_id, created_at, updated_at, first_id, second_id, reasons, score)
SELECT gen_random_uuid(), entity_id, now(), now(), first_id, second_id,
  to_jsonb(array_agg(reason ORDER BY weight DESC, reason)),
  round((1 - exp(sum(ln(1 - weight))))::numeric, 4)::float8
FROM ({source}) AS candidates
WHERE NOT EXISTS (SELECT 1 FROM crm_duplicatedismissal d WHERE d.entity_id = candidates.entity_id
                  AND d.kind = '{kind}' AND d.first_id = candidates.first_id AND d.second_id = candidates.second_id)
GROUP BY entity_id, first_id, second_id"""


def _rebuild_postgres(entity_id) -> None:
    """Every pair of the entity again, set-based (grouped equal keys and one join per reason)."""
    contacts = [
        _equal_pairs_sql("crm_contact", "email_key", "similar_email", CONTACT_WEIGHTS["similar_email"]),
        _equal_pairs_sql("crm_contact", "phone_key", "same_phone", CONTACT_WEIGHTS["same_phone"]),
        _COLLEAGUES_SQL,
    ]
    companies = [
        _equal_pairs_sql("crm_company", "website_host", "same_website_host", COMPANY_WEIGHTS["same_website_host"]),
        _equal_pairs_sql("crm_company", "name_key", "same_name", COMPANY_WEIGHTS["same_name"]),
        _equal_pairs_sql("crm_company", "phone_key", "same_phone", COMPANY_WEIGHTS["same_phone"]),
    ]
    params = {"entity": entity_id}
    with transaction.atomic(), connection.cursor() as cursor:
        ContactDuplicate.objects.filter(entity_id=entity_id).delete()
        CompanyDuplicate.objects.filter(entity_id=entity_id).delete()
        cursor.execute(_insert_pairs_sql("crm_contactduplicate", DuplicateKind.CONTACT, contacts), params)
        if Company.objects.filter(entity_id=entity_id).count() <= SIMILAR_COMPANIES_REBUILD_LIMIT:
            cursor.execute("SELECT set_config('pg_trgm.similarity_threshold', %s, true)", [str(SIMILARITY)])
            companies.append(_SIMILAR_COMPANIES_SQL)
        cursor.execute(_insert_pairs_sql("crm_companyduplicate", DuplicateKind.COMPANY, companies), params)


def duplicates_rebuild(*, entity) -> dict[str, int]:
    """Find every pair of the entity again, after loads that bypass the services (the demo seeder's
    COPY, a restore). PostgreSQL: set-based, as migration 0018's first fill (the keys are kept by
    its trigger). SQLite (the demo): the keys are recomputed and each record's pairs found as a
    write finds them, in batches."""
    if is_postgres():
        _rebuild_postgres(entity.pk)
    else:
        for kind, (model, _) in PAIR_MODELS.items():
            ids = list(model.objects.for_entity(entity).order_by().values_list("pk", flat=True))
            for start in range(0, len(ids), 500):
                with transaction.atomic():
                    for row in model.objects.filter(pk__in=ids[start : start + 500]):
                        keys = contact_keys(row) if kind == DuplicateKind.CONTACT else company_keys(row)
                        if any(getattr(row, name) != value for name, value in keys.items()):
                            model.objects.filter(pk=row.pk).update(**keys)
            for start in range(0, len(ids), 500):
                with transaction.atomic():
                    if kind == DuplicateKind.CONTACT:
                        contacts_refresh(contact_ids=ids[start : start + 500])
                    else:
                        companies_refresh(company_ids=ids[start : start + 500])
    return {kind: pair_model.objects.for_entity(entity).count() for kind, (_, pair_model) in PAIR_MODELS.items()}
