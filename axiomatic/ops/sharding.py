"""How far the LIVE schema is from sharding by entity on Citus (distribution column `entity_id`).

Read from PostgreSQL's catalogs (never from the models), so the report follows every migration:
`manage.py sharding_report` prints it, `tests/test_sharding_report.py` prints it in the test run
and fails if a table is left unclassified. docs/scaling.md explains the plan behind it.

Every table of the schema gets one class:

- `distributed`: has `entity_id` — sharded by it, all co-located (an entity's rows on one node).
- `root`: the table `entity_id` points at (the entities): distributed by its `id`, co-located with
  the rest, so `entity_id → id` foreign keys join on one node.
- `reference`: no `entity_id`, but a distributed (or reference) table points at it (users, ...):
  a small table copied to every node, so foreign keys to it work from every shard.
- `local`: none of these (sessions, migrations, sign-in protection logs): stays on the
  coordinator, never joined with tenant rows.

And per table what Citus would refuse today (`gaps`), by its rules for distributed tables:
the primary key and every unique constraint or unique index must contain the distribution
column; a foreign key between two distributed tables must include it on both sides
(`(entity_id, company_id) → (entity_id, id)`); a reference or local table may not point at a
distributed one. `notes` lists what needs a decision rather than a key change (triggers).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from django.db import DEFAULT_DB_ALIAS, connections

DISTRIBUTION_COLUMN = "entity_id"
DISTRIBUTED, ROOT, REFERENCE, LOCAL = "distributed", "root", "reference", "local"
KINDS = (ROOT, DISTRIBUTED, REFERENCE, LOCAL)


@dataclass
class ForeignKey:
    name: str
    columns: list[str]
    target: str
    target_columns: list[str]


@dataclass
class Unique:
    name: str
    columns: list[str]  # "(expression)" for an indexed expression
    primary: bool = False
    partial: bool = False


@dataclass
class TableReadiness:
    table: str
    kind: str
    reason: str
    primary_key: list[str]
    gaps: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return not self.gaps


@dataclass
class ShardingReport:
    database: str
    tables: list[TableReadiness]

    def of_kind(self, kind: str) -> list[TableReadiness]:
        return [table for table in self.tables if table.kind == kind]

    def summary(self) -> dict:
        sharded = self.of_kind(ROOT) + self.of_kind(DISTRIBUTED)
        return {
            **{kind: len(self.of_kind(kind)) for kind in KINDS},
            "shardedReady": sum(table.ready for table in sharded),
            "sharded": len(sharded),
            "gaps": sum(len(table.gaps) for table in self.tables),
        }

    def as_dict(self) -> dict:
        return {
            "database": self.database,
            "distributionColumn": DISTRIBUTION_COLUMN,
            "summary": self.summary(),
            "tables": [{**asdict(table), "ready": table.ready} for table in self.tables],
        }

    def as_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)

    def as_text(self) -> str:
        summary = self.summary()
        lines = [
            f"Sharding readiness by {DISTRIBUTION_COLUMN} (Citus), live schema of {self.database}",
            f"  {summary[ROOT]} root, {summary[DISTRIBUTED]} distributed, {summary[REFERENCE]} reference, "
            f"{summary[LOCAL]} local; {summary['shardedReady']} of {summary['sharded']} sharded tables "
            f"ready; {summary['gaps']} gaps",
        ]
        for kind in KINDS:
            tables = self.of_kind(kind)
            if not tables:
                continue
            lines.append("")
            lines.append(f"{kind.upper()} ({len(tables)})")
            for table in tables:
                mark = "ready" if table.ready else f"{len(table.gaps)} gap(s)"
                lines.append(f"  {table.table}  [{mark}]  pk ({', '.join(table.primary_key) or '-'}) — {table.reason}")
                lines.extend(f"      gap: {gap}" for gap in table.gaps)
                lines.extend(f"      note: {note}" for note in table.notes)
        return "\n".join(lines)


_TABLES_SQL = """
SELECT c.oid, c.relname
FROM pg_class c
WHERE c.relnamespace = to_regnamespace(current_schema()) AND c.relkind IN ('r', 'p') AND NOT c.relispartition
ORDER BY c.relname
"""
_COLUMNS_SQL = """
SELECT a.attrelid, a.attnum, a.attname
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
WHERE c.relnamespace = to_regnamespace(current_schema()) AND a.attnum > 0 AND NOT a.attisdropped
"""
_FOREIGN_KEYS_SQL = """
SELECT conrelid, conname, conkey, confrelid, confkey
FROM pg_constraint
WHERE contype = 'f' AND connamespace = to_regnamespace(current_schema())
ORDER BY conrelid, conname
"""
# Unique indexes cover primary keys, unique constraints and partial/expression unique indexes.
_UNIQUE_SQL = """
SELECT i.indrelid, ic.relname, i.indkey::int2[], i.indisprimary, i.indpred IS NOT NULL
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE i.indisunique AND ic.relnamespace = to_regnamespace(current_schema())
ORDER BY i.indrelid, ic.relname
"""
_TRIGGERS_SQL = """
SELECT t.tgrelid, t.tgname
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
WHERE NOT t.tgisinternal AND c.relnamespace = to_regnamespace(current_schema())
ORDER BY t.tgrelid, t.tgname
"""


def _columns_of(names: dict[int, str], numbers) -> list[str]:
    return [names[number] for number in numbers if number in names]


def sharding_report(using: str = DEFAULT_DB_ALIAS) -> ShardingReport:
    """The readiness of every table of the live schema (PostgreSQL only)."""
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_database()")
        database = cursor.fetchone()[0]
        cursor.execute(_TABLES_SQL)
        tables = dict(cursor.fetchall())  # oid -> name
        cursor.execute(_COLUMNS_SQL)
        columns: dict[int, dict[int, str]] = {}
        for oid, number, name in cursor.fetchall():
            columns.setdefault(oid, {})[number] = name
        cursor.execute(_FOREIGN_KEYS_SQL)
        foreign_keys: dict[int, list[ForeignKey]] = {}
        for oid, name, keys, target, target_keys in cursor.fetchall():
            if oid in tables and target in tables:
                foreign_keys.setdefault(oid, []).append(
                    ForeignKey(
                        name,
                        _columns_of(columns[oid], keys),
                        tables[target],
                        _columns_of(columns[target], target_keys),
                    )
                )
        cursor.execute(_UNIQUE_SQL)
        uniques: dict[int, list[Unique]] = {}
        for oid, name, keys, primary, partial in cursor.fetchall():
            if oid in tables:
                # 0 marks an expression (lower(name)); the plain columns beside it still count.
                names = [columns[oid].get(number, "(expression)") if number else "(expression)" for number in keys]
                uniques.setdefault(oid, []).append(Unique(name, names, primary, partial))
        cursor.execute(_TRIGGERS_SQL)
        triggers: dict[int, list[str]] = {}
        for oid, name in cursor.fetchall():
            triggers.setdefault(oid, []).append(name)

    by_name = {name: oid for oid, name in tables.items()}
    distributed = {name for oid, name in tables.items() if DISTRIBUTION_COLUMN in columns.get(oid, {}).values()}
    roots = {
        fk.target
        for name in distributed
        for fk in foreign_keys.get(by_name[name], [])
        if fk.columns == [DISTRIBUTION_COLUMN] and fk.target not in distributed
    }
    sharded = distributed | roots
    # Reference: everything a sharded table reaches by foreign keys that is not sharded itself
    # (a reference table may point only at reference tables, so the closure is taken).
    reference: set[str] = set()
    frontier = list(sharded)
    while frontier:
        for fk in foreign_keys.get(by_name[frontier.pop()], []):
            if fk.target not in sharded and fk.target not in reference:
                reference.add(fk.target)
                frontier.append(fk.target)

    def kind_of(name: str) -> str:
        if name in roots:
            return ROOT
        if name in distributed:
            return DISTRIBUTED
        if name in reference:
            return REFERENCE
        return LOCAL

    def sharding_column(name: str) -> str:
        return "id" if name in roots else DISTRIBUTION_COLUMN

    report = []
    for oid, name in tables.items():
        kind = kind_of(name)
        table_uniques = uniques.get(oid, [])
        primary = next((unique.columns for unique in table_uniques if unique.primary), [])
        entry = TableReadiness(table=name, kind=kind, reason=_reason(kind), primary_key=primary)
        if kind in (ROOT, DISTRIBUTED):
            column = sharding_column(name)
            if not primary:
                entry.gaps.append("no primary key")
            for unique in table_uniques:
                if column in unique.columns:
                    continue
                label = "primary key" if unique.primary else ("partial unique index" if unique.partial else "unique")
                entry.gaps.append(f"{label} {unique.name} ({', '.join(unique.columns)}) lacks {column}")
            for fk in foreign_keys.get(oid, []):
                target_kind = kind_of(fk.target)
                if target_kind == ROOT and fk.columns == [DISTRIBUTION_COLUMN]:
                    continue  # entity_id → entities.id: the distribution columns themselves
                if target_kind in (REFERENCE, LOCAL):
                    continue  # to a reference table: allowed from every shard
                target_column = sharding_column(fk.target)
                if column in fk.columns and target_column in fk.target_columns:
                    continue
                entry.gaps.append(
                    f"foreign key {fk.name} ({', '.join(fk.columns)}) → {fk.target} ({', '.join(fk.target_columns)}) "
                    f"lacks {column}: make it ({column}, {', '.join(fk.columns)}) → "
                    f"{fk.target} ({target_column}, {', '.join(fk.target_columns)})"
                )
            for trigger in triggers.get(oid, []):
                entry.notes.append(f"trigger {trigger}: runs per shard on Citus; review what it writes")
        else:
            for fk in foreign_keys.get(oid, []):
                if kind == LOCAL and kind_of(fk.target) == REFERENCE:
                    entry.notes.append(
                        f"foreign key {fk.name} → reference table {fk.target}: needs the coordinator in the "
                        "metadata (Citus's local-to-reference foreign keys)"
                    )
                if kind_of(fk.target) in (ROOT, DISTRIBUTED):
                    entry.gaps.append(
                        f"foreign key {fk.name} ({', '.join(fk.columns)}) from a {kind} table to the "
                        f"{kind_of(fk.target)} table {fk.target}: not allowed on Citus"
                    )
        report.append(entry)
    order = {kind: index for index, kind in enumerate(KINDS)}
    report.sort(key=lambda entry: (order[entry.kind], entry.table))
    return ShardingReport(database=database, tables=report)


def _reason(kind: str) -> str:
    return {
        ROOT: "the entities: distributed by id, co-located with every entity_id table",
        DISTRIBUTED: f"has {DISTRIBUTION_COLUMN}: distributed by it, co-located",
        REFERENCE: "no entity_id, referenced by sharded tables: copied to every node",
        LOCAL: "no entity_id, not referenced by sharded tables: stays on the coordinator",
    }[kind]
