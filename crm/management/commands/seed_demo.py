"""Bulk demo data for an entity: companies, contacts (each with a primary company membership),
leads across the entity's stages, and activities (tasks with due dates and statuses among them).

Built for volume — a million companies, half a million contacts and leads and a million
activities in a few minutes, in bounded memory:

- Rows stream from generators, one chunk (`CHUNK` rows) at a time; no table's rows are ever held.
  Ids are computed from the row's number (a random permutation drawn per run), so a contact's
  company or an activity's lead is found again from a small integer array, not a list of UUIDs.
- PostgreSQL: each chunk is one `COPY ... FROM STDIN` (psycopg 3 `cursor.copy()`) in its own
  transaction. Triggers fire as for INSERT (statement-level ones once per chunk). COPY FROM refuses
  a table whose row-level security applies to the session, so there the chunk goes into a
  temporary table first and moves on with one `INSERT ... SELECT` (the command runs under the
  operator bypass, `JsonCommand`). Afterwards the tables are analysed, so plans fit the new volume.
- SQLite (the zero-setup demo): batched inserts of the values `bulk_create` would write (each
  prepared by its field), without `auto_now` overwriting the spread timestamps.

Values are spread like a real CRM's: names varied enough that a six-letter search is selective,
most companies prospects or customers, timestamps over the last two years, lead values
log-normal in a few currencies, some leads won or lost (with `closedAt`), tasks open, done or
cancelled around today. Timeline events are not generated for seeded leads.
"""

from __future__ import annotations

import math
import os
import secrets
import threading
import time
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta

from django.core.management.base import CommandError
from django.db import connection, transaction
from django.db.models import NOT_PROVIDED

from axiomatic.db import is_postgres
from axiomatic.management.commands._base import JsonCommand
from axiomatic.models import Entity, Membership
from axiomatic.rls import bypass_rls
from axiomatic.services import entity_create, membership_ensure, user_get_or_create
from crm.choices import ActivityStatus, ActivityType, CompanyRole, CompanyStatus, StageKind
from crm.models import Activity, Company, CompanyMembership, Contact, Lead, PipelineStage
from crm.services.duplicates import duplicates_rebuild

CHUNK = 50_000  # rows per COPY (and per transaction) on PostgreSQL
SQLITE_BATCH = 2_000  # rows per executemany elsewhere
SPREAD_DAYS = 730  # created/updated timestamps fall in the last two years


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_FIRST = _words(
    "Ada Alan Amara Ana Anders Anya Arjun Astrid Barbara Bjorn Carla Chen Chidi Dara Dennis Diego Elena Emeka "
    "Esther Farid Frances Grace Guido Hana Hiro Ines Ivan Jamal Jana Joao Ken Kofi Lars Leila Linus Lucia "
    "Malik Margaret Mei Mateo Nadia Niamh Olga Omar Priya Rafael Rosa Sven Tariq Yara Yusuf Zoe"
)
_LAST = _words(
    "Abara Allen Bauer Becker Castillo Chowdhury Costa Dubois Eriksen Fischer Garcia Hamilton Haddad "
    "Hansen Hopper Ivanova Jansen Kamau Kowalski Lindqvist Liskov Lovelace Moreau Murphy Nakamura Novak "
    "Okafor Oliveira Petrov Quinn Ritchie Rossi Rossum Sato Schmidt Silva Thompson Torvalds Turing Varga "
    "Wagner Walsh Weber Yilmaz Zhang"
)
_WORDS = _words(
    "Acme Globex Initech Umbrella Stark Wayne Tyrell Cyberdyne Soylent Hooli Vandelay Wonka Nakatomi "
    "Oscorp Aperture Massive Dynamic Gringotts Monarch Pied Piper"
)
_SYLLABLES = _words(
    "al an ar ba bel bri ca cor da del dor el en fa fin ga gor ha hel in ka kor la lin lo ma mer mon na "
    "nor o pa per qua ra ron sa sel ster ta tor u va ven wil xa yo zen"
)
_SUFFIX = ("Ltd", "GmbH", "Inc", "BV", "SA", "LLC", "AG", "plc", "Oy", "SRL")
_INDUSTRIES = (
    "Software",
    "Manufacturing",
    "Retail",
    "Logistics",
    "Healthcare",
    "Finance",
    "Energy",
    "Education",
    "Hospitality",
    "Construction",
    "",
)
_PLACES = (
    ("Berlin", "DE"),
    ("Munich", "DE"),
    ("London", "GB"),
    ("Manchester", "GB"),
    ("Paris", "FR"),
    ("Lyon", "FR"),
    ("Amsterdam", "NL"),
    ("Madrid", "ES"),
    ("Milan", "IT"),
    ("Zurich", "CH"),
    ("New York", "US"),
    ("Austin", "US"),
    ("Toronto", "CA"),
    ("Tokyo", "JP"),
    ("Sydney", "AU"),
    ("", ""),
)
_TITLES = ("CEO", "CTO", "Head of Sales", "Buyer", "Procurement Lead", "Engineer", "Office Manager", "CFO", "")
_PRODUCTS = ("licences", "renewal", "pilot", "expansion", "support plan", "consulting", "hardware", "training")
_SOURCES = ("web", "referral", "event", "outbound", "partner", "")
_LOST_REASONS = ("Price", "Went with a competitor", "No budget", "No decision", "Timing")
_OTHER_CURRENCIES = ("EUR", "GBP", "USD", "CHF", "JPY")
_ACTIVITY_TYPES = (  # (type, weight)
    (ActivityType.CALL, 25),
    (ActivityType.EMAIL, 30),
    (ActivityType.MEETING, 10),
    (ActivityType.NOTE, 15),
    (ActivityType.TASK, 20),
)


class Command(JsonCommand):
    help = "Fill an entity with demo data in bulk. Prints the counts created."

    def add_arguments(self, parser):
        parser.add_argument("--entity", default=None, help="Entity UUID (default: a new 'Demo' entity)")
        parser.add_argument("--companies", type=int, default=50)
        parser.add_argument("--contacts", type=int, default=100)
        parser.add_argument("--leads", type=int, default=60)
        parser.add_argument("--activities", type=int, default=120)
        parser.add_argument(
            "--members", type=int, default=0, help="First make sure the entity has this many members (owners)"
        )
        parser.add_argument("--seed", type=int, default=None, help="Random seed, for repeatable values")
        parser.add_argument(
            "--jobs",
            type=int,
            default=min(2, os.cpu_count() or 1),
            help="Connections writing at once (PostgreSQL; default: 2, or 1 on a single CPU)",
        )

    def handle(self, *args, entity, companies, contacts, leads, activities, members, seed, jobs, **options):
        sizes = {"companies": companies, "contacts": contacts, "leads": leads, "activities": activities}
        for name, value in {**sizes, "members": members}.items():
            if value < 0:
                raise CommandError(f"--{name} must be 0 or more")
        if jobs < 1:
            raise CommandError("--jobs must be 1 or more")
        entity_obj = self.entity_from_arg(entity) if entity else entity_create(name="Demo")
        if members:
            ensure_members(entity_obj, members)
        progress = (lambda message: self.stderr.write(message)) if options.get("verbosity", 1) >= 2 else None
        counts = seed_entity(entity_obj, **sizes, seed=seed, jobs=jobs, progress=progress)
        self.emit({"entityId": entity_obj.pk, **counts})


def ensure_members(entity: Entity, count: int) -> None:
    """At least `count` members (they own and are assigned the seeded rows)."""
    existing = Membership.objects.filter(entity=entity).count()
    for n in range(existing, count):
        user = user_get_or_create(
            email=f"member{n}-{entity.pk.hex[:12]}@demo.example.com",
            name=f"{_FIRST[n % len(_FIRST)]} {_LAST[(n * 7) % len(_LAST)]}",
        )
        membership_ensure(user=user, entity=entity, role=Membership.Role.MEMBER)


# --- ids and values ------------------------------------------------------------------------------


class _Ids:
    """Row number → a unique, random-looking version 4 UUID (32 hex digits), fixed for one run.

    The low 62 bits, `(n * odd + salt) mod 2**62`, are a permutation of the row numbers, so ids
    never collide within a table; the high bits scatter the ids. The salts come from the system's
    randomness (not `--seed`), so seeding twice into one database never collides either.
    """

    _LOW, _HIGH = 0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F  # odd: invertible modulo powers of two
    _MASK62, _MASK64 = (1 << 62) - 1, (1 << 64) - 1

    def __init__(self) -> None:
        self._low_salt = secrets.randbits(62)
        self._high_salt = secrets.randbits(64)

    def __call__(self, n: int) -> str:
        high = (((n * self._HIGH + self._high_salt) & self._MASK64) & ~0xF000) | 0x4000  # version 4
        low = ((n * self._LOW + self._low_salt) & self._MASK62) | (1 << 63)  # variant 10
        return f"{high:016x}{low:016x}"


class _Rand:
    """The few random draws the generators need, on `random.Random`'s fastest primitive."""

    def __init__(self, seed: int | None) -> None:
        import random

        self._rng = random.Random(seed)
        self.random = self._rng.random
        self.gauss = self._rng.gauss

    def below(self, n: int) -> int:
        return int(self.random() * n)

    def pick(self, seq):
        return seq[int(self.random() * len(seq))]

    def weighted(self, table: list) -> object:
        """`table` from `_cumulative`: [(cumulative weight in 0..1, value), ...]."""
        r = self.random()
        for bound, value in table:
            if r < bound:
                return value
        return table[-1][1]

    def moment(self, start: datetime, span_seconds: float) -> datetime:
        return start + timedelta(seconds=self.random() * span_seconds)


def _cumulative(pairs: Iterable[tuple[object, float]]) -> list:
    pairs = list(pairs)
    total = float(sum(weight for _, weight in pairs))
    table, acc = [], 0.0
    for value, weight in pairs:
        acc += weight / total
        table.append((acc, value))
    return table


def _pseudo_word(rand: _Rand) -> str:
    return "".join(rand.pick(_SYLLABLES) for _ in range(2 + rand.below(2))).capitalize()


# --- writing -------------------------------------------------------------------------------------


class _Table:
    """One table's rows: the columns `make(rand, n)` provides (attribute names, in row order), the
    constant values of the other columns, and the row maker (None from it: no row for `n`)."""

    def __init__(self, model, provided: tuple[str, ...], make: Callable[[_Rand, int], tuple | None]) -> None:
        self.model = model
        self.make = make
        fields = {field.attname: field for field in model._meta.local_concrete_fields}
        missing = [name for name in provided if name not in fields]
        if missing:
            raise CommandError(f"{model.__name__} has no field(s) {missing}")
        rest_names, rest_values = [], []
        for name, field in fields.items():
            if name in provided or getattr(field, "generated", False) or field.db_default is not NOT_PROVIDED:
                continue  # generated and database-default columns are the database's to fill
            value = field.get_default()
            if value is None and not field.null:
                raise CommandError(f"seed_demo gives no value for the required field {model.__name__}.{name}")
            rest_names.append(name)
            rest_values.append(value)
        self.attnames = (*provided, *rest_names)
        self.columns = tuple(fields[name].column for name in self.attnames)
        self.tail = tuple(rest_values)
        self.table = model._meta.db_table

    def rows(self, rand: _Rand, start: int, stop: int) -> Iterator[tuple]:
        make, tail = self.make, self.tail
        for n in range(start, stop):
            row = make(rand, n)
            if row is not None:
                yield row + tail


class _Writer:
    """Writes a table's rows `0..count-1` in `jobs` contiguous ranges, each on its own connection
    (PostgreSQL outside a transaction) or all on this one; progress goes to `progress`."""

    def __init__(self, *, seed: int | None, jobs: int, progress: Callable[[str], None] | None) -> None:
        self.seed = seed
        self.postgresql = self.copy_supported()
        # Inside a transaction (a test, a caller's atomic block) other connections would not see its rows.
        self.jobs = max(1, jobs) if self.postgresql and not connection.in_atomic_block else 1
        self.progress = progress
        self._lock = threading.Lock()
        self._started = time.monotonic()

    @staticmethod
    def copy_supported() -> bool:
        return is_postgres()

    def _rand(self, table: _Table, part: int) -> _Rand:
        if self.seed is None:
            return _Rand(None)
        return _Rand(self.seed * 1_000_003 + zlib.crc32(table.table.encode()) * 97 + part)

    def write(self, table: _Table, count: int) -> None:
        jobs = min(self.jobs, max(1, count // CHUNK))
        bounds = [count * part // jobs for part in range(jobs + 1)]
        ranges = [(part, bounds[part], bounds[part + 1]) for part in range(jobs)]
        if jobs == 1:
            self._write_range(table, *ranges[0])
        else:
            failures: list[BaseException] = []
            threads = [
                threading.Thread(target=self._in_thread, args=(table, *r, failures), name=f"seed-{table.table}-{r[0]}")
                for r in ranges
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if failures:
                raise failures[0]
        if self.postgresql:
            with connection.cursor() as cursor:
                cursor.execute(f"ANALYZE {connection.ops.quote_name(table.table)}")  # only warns if not the owner

    def _in_thread(self, table: _Table, part: int, start: int, stop: int, failures: list) -> None:
        try:
            with bypass_rls("seed_demo writes one entity's demo rows on a second connection"):
                self._write_range(table, part, start, stop)
        except BaseException as exc:  # handed to the main thread
            failures.append(exc)
        finally:
            connection.close()

    def _report(self, table: _Table, rows: int) -> None:
        if self.progress:
            with self._lock:
                self.progress(f"{time.monotonic() - self._started:7.1f}s  {table.table}: +{rows}")

    def _write_range(self, table: _Table, part: int, start: int, stop: int) -> None:
        rand = self._rand(table, part)
        quote = connection.ops.quote_name
        columns = ", ".join(quote(column) for column in table.columns)
        if not self.postgresql:
            # What bulk_create would write (each value prepared by its field), minus its auto_now
            # stamping, which would flatten the spread of created/updated timestamps.
            fields = [table.model._meta.get_field(name) for name in table.attnames]
            sql = f"INSERT INTO {quote(table.table)} ({columns}) VALUES ({', '.join(['%s'] * len(fields))})"
            for first in range(start, stop, SQLITE_BATCH):
                rows = table.rows(rand, first, min(stop, first + SQLITE_BATCH))
                prepared = [
                    [f.get_db_prep_save(f.to_python(v), connection) for f, v in zip(fields, row, strict=True)]
                    for row in rows
                ]
                with transaction.atomic(), connection.cursor() as cursor:
                    cursor.executemany(sql, prepared)
            return
        target = quote(table.table)
        with connection.cursor() as cursor:
            # COPY FROM refuses a table whose row-level security applies to this session.
            cursor.execute("SELECT row_security_active(%s::regclass)", [table.table])
            through_temp = cursor.fetchone()[0]
            staging = quote(f"seed_{table.table}")
            if through_temp:
                cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {staging} (LIKE {target} INCLUDING DEFAULTS)")
        for first in range(start, stop, CHUNK):
            last = min(stop, first + CHUNK)
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit = off")  # demo data: a crash may lose the last chunk
                # Trigram (GIN) indexes merge their pending rows in bigger, cheaper batches.
                cursor.execute("SET LOCAL gin_pending_list_limit = '32MB'")
                with cursor.copy(f"COPY {staging if through_temp else target} ({columns}) FROM STDIN") as copy:
                    write_row = copy.write_row
                    for row in table.rows(rand, first, last):
                        write_row(row)
                if through_temp:
                    cursor.execute(f"INSERT INTO {target} ({columns}) SELECT {columns} FROM {staging}")
                    cursor.execute(f"TRUNCATE {staging}")
            self._report(table, last - first)


# --- the data ------------------------------------------------------------------------------------


def seed_entity(
    entity: Entity,
    *,
    companies: int,
    contacts: int,
    leads: int,
    activities: int,
    seed: int | None = None,
    rng=None,
    jobs: int = 1,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Write the demo rows; returns how many of each were created.

    `seed` makes the values repeatable for the same `jobs` (ids never are). `rng` is accepted for
    callers that pass a `random.Random`: its next draw becomes the seed. `jobs` > 1 writes each
    table over that many connections at once (PostgreSQL, outside a transaction).
    """
    if rng is not None and seed is None:
        seed = rng.randrange(2**32)
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(days=SPREAD_DAYS)
    span = (now - start).total_seconds()
    owners = [user_id.hex for user_id in Membership.objects.filter(entity=entity).values_list("user_id", flat=True)]
    stages = list(
        PipelineStage.objects.for_entity(entity)
        .order_by("sort_order")
        .values_list("id", "kind", "default_probability_pct")
    )
    if leads and not stages:
        raise CommandError("The entity has no pipeline stages")
    stages = [(stage_id.hex, str(kind), probability) for stage_id, kind, probability in stages]
    entity_id = entity.pk.hex
    run_tag = secrets.token_hex(4)  # keeps domains and emails unique when seeding the same entity again
    company_id, contact_id, lead_id, membership_id, activity_id = _Ids(), _Ids(), _Ids(), _Ids(), _Ids()
    # Row number → row number of the contact's primary company / the lead's contact (-1: none).
    contact_company = array("l", [-1]) * contacts
    lead_contact = array("l", [-1]) * leads

    def owner(rand: _Rand, share: float = 0.85) -> str | None:
        return owners[rand.below(len(owners))] if owners and rand.random() < share else None

    def created_updated(rand: _Rand) -> tuple[datetime, datetime]:
        created = rand.moment(start, span)
        return created, rand.moment(created, (now - created).total_seconds())

    # Companies: a varied pseudo-word, a well-known word and a legal form; mostly prospects and customers.
    roles = _cumulative([("prospect", 55), ("customer", 30), ("vendor", 10), ("both", 5)])
    assert {role for _, role in roles} == set(CompanyRole.values)

    def make_company(rand: _Rand, n: int) -> tuple:
        word = _pseudo_word(rand)
        created, updated = created_updated(rand)
        archived = rand.random() < 0.08
        domain = f"{word.lower()}{n}-{run_tag}.example.com" if rand.random() < 0.8 else None
        city, country = rand.pick(_PLACES)
        return (
            company_id(n),
            entity_id,
            created,
            updated,
            f"{word} {rand.pick(_WORDS)} {rand.pick(_SUFFIX)}",
            rand.weighted(roles),
            CompanyStatus.INACTIVE.value if archived else CompanyStatus.ACTIVE.value,
            owner(rand),
            domain,
            f"https://{domain}" if domain else "",
            rand.pick(_INDUSTRIES),
            city,
            country,
            updated if archived else None,
        )

    company_columns = ("id", "entity_id", "created_at", "updated_at", "name", "role", "status", "owner_id")
    company_columns += ("domain", "website", "industry", "city", "country", "archived_at")

    # Contacts: each at one company (its primary membership), remembered by the company's row number.
    def make_contact(rand: _Rand, n: int) -> tuple:
        first, last = rand.pick(_FIRST), rand.pick(_LAST)
        if companies:
            contact_company[n] = rand.below(companies)
        created, updated = created_updated(rand)
        email = f"{first}.{last}.{n}-{run_tag}@example.com".lower() if rand.random() < 0.95 else None
        return (contact_id(n), entity_id, created, updated, first, last, email, rand.pick(_TITLES), owner(rand))

    contact_columns = ("id", "entity_id", "created_at", "updated_at", "first_name", "last_name", "email", "title")
    contact_columns += ("owner_id",)

    def make_membership(rand: _Rand, n: int) -> tuple | None:
        company = contact_company[n]
        if company < 0:
            return None
        created, updated = created_updated(rand)
        return (membership_id(n), entity_id, created, updated, contact_id(n), company_id(company), "", True)

    membership_columns = ("id", "entity_id", "created_at", "updated_at", "contact_id", "company_id", "title")
    membership_columns += ("is_primary",)

    # Leads: most open, some won or lost (closed when they last changed stage); the company is the
    # contact's primary company.
    groups = [
        ([s for s in stages if s[1] == StageKind.OPEN], 60),
        ([s for s in stages if s[1] == StageKind.WON], 18),
        ([s for s in stages if s[1] == StageKind.LOST], 22),
    ]
    stage_groups = _cumulative((group, weight) for group, weight in groups if group)
    currencies = _cumulative(
        [(entity.default_currency, 75)] + [(code, 5) for code in _OTHER_CURRENCIES if code != entity.default_currency]
    )

    def make_lead(rand: _Rand, n: int) -> tuple:
        stage, kind, probability = rand.pick(rand.weighted(stage_groups))
        created, updated = created_updated(rand)
        changed = rand.moment(created, (updated - created).total_seconds())
        contact = rand.below(contacts) if contacts and rand.random() < 0.9 else -1
        lead_contact[n] = contact
        company = contact_company[contact] if contact >= 0 else (rand.below(companies) if companies else -1)
        value = None if rand.random() < 0.05 else min(5_000_000, max(100, round(math.exp(rand.gauss(8.5, 1.3)))))
        closed = kind != StageKind.OPEN
        close_date = (changed if closed else now + timedelta(days=rand.below(180))).date()
        return (
            lead_id(n),
            entity_id,
            created,
            updated,
            f"{rand.pick(_WORDS)} {rand.pick(_PRODUCTS)} {n}",
            company_id(company) if company >= 0 else None,
            contact_id(contact) if contact >= 0 else None,
            stage,
            f"{value}.00" if value is not None else None,
            rand.weighted(currencies),
            probability,
            close_date,
            owner(rand, 0.95),
            rand.pick(_SOURCES),
            rand.pick(_LOST_REASONS) if kind == StageKind.LOST else "",
            changed if closed else None,
            changed,
        )

    lead_columns = ("id", "entity_id", "created_at", "updated_at", "title", "company_id", "contact_id", "stage_id")
    lead_columns += ("value", "currency", "probability_pct", "expected_close_date", "owner_id", "source")
    lead_columns += ("lost_reason", "closed_at", "stage_changed_at")

    # Activities: most about a lead (and its contact and company), the rest about a company; tasks
    # are due within two months either side of today, open, done or cancelled.
    types = _cumulative((str(kind), weight) for kind, weight in _ACTIVITY_TYPES)
    labels = dict(ActivityType.choices)
    task_statuses = _cumulative([("open", 50), ("completed", 40), ("cancelled", 10)])
    assert {status for _, status in task_statuses} == set(ActivityStatus.values)

    def make_activity(rand: _Rand, n: int) -> tuple:
        kind = rand.weighted(types)
        lead = contact = company = -1
        if leads and rand.random() < 0.7:
            lead = rand.below(leads)
            contact = lead_contact[lead]
            company = contact_company[contact] if contact >= 0 else -1
        elif companies:
            company = rand.below(companies)
        created, updated = created_updated(rand)
        due = completed = duration = assignee = None
        if kind == ActivityType.TASK:
            status = rand.weighted(task_statuses)
            due = now + timedelta(days=rand.random() * 120 - 60)
            assignee = owner(rand, 0.9)
            if status == ActivityStatus.COMPLETED:
                completed = min(now, due)
        else:
            status, completed = ActivityStatus.COMPLETED.value, created
            if kind in (ActivityType.CALL, ActivityType.MEETING):
                duration = 5 + rand.below(85)
        return (
            activity_id(n),
            entity_id,
            created,
            updated,
            kind,
            f"{labels[kind]} about {rand.pick(_WORDS)} {rand.pick(_PRODUCTS)}",
            status,
            created,
            due,
            completed,
            duration,
            lead_id(lead) if lead >= 0 else None,
            company_id(company) if company >= 0 else None,
            contact_id(contact) if contact >= 0 else None,
            assignee,
            owner(rand, 0.8),
        )

    activity_columns = ("id", "entity_id", "created_at", "updated_at", "type", "subject", "status", "occurred_at")
    activity_columns += ("due_at", "completed_at", "duration_minutes", "lead_id", "company_id", "contact_id")
    activity_columns += ("assignee_id", "created_by_id")

    writer = _Writer(seed=seed, jobs=jobs, progress=progress)
    # In dependency order: a row's references are committed before it is written.
    writer.write(_Table(Company, company_columns, make_company), companies)
    writer.write(_Table(Contact, contact_columns, make_contact), contacts)
    writer.write(_Table(CompanyMembership, membership_columns, make_membership), contacts)
    writer.write(_Table(Lead, lead_columns, make_lead), leads)
    writer.write(_Table(Activity, activity_columns, make_activity), activities)
    duplicates_rebuild(entity=entity)  # COPY bypasses the services that keep the duplicate pairs
    return {"companies": companies, "contacts": contacts, "leads": leads, "activities": activities}
