"""Duplicates and merge (docs/api.md, "Duplicates and merge").

Schema: the normalised keys on contacts and companies (indexed), the duplicate pairs, dismissals
and merge tombstones. PostgreSQL also gets, in `keys_and_pairs`:

- `crm_dup_*` SQL functions, the twins of `crm.models.keys` (tests compare them), and BEFORE
  triggers that keep the keys on every write (COPY, bulk UPDATE and imports included);
- a trigram index on the companies' `name_key` for `similar_name`, usable under row-level security
  once `similarity_op` is LEAKPROOF (as migration 0009 does for search; a superuser only);
- the set-based fill of the keys and of the pairs of the existing rows (equal keys grouped, never a
  row-by-row loop); similar company names only below 200,000 companies (one index probe per
  company), beyond that they are found as companies are written;
- counters of the pairs (`axiomatic.counters`) so the lists' totals are O(1).
"""

import logging
import django.db.models.deletion
import uuid
from django.conf import settings
from django.db import migrations, models

from axiomatic.counters import counting_triggers_sql

logger = logging.getLogger("axiomatic.migrations")

SUFFIXES = (
    "inc|incorporated|corp|corporation|co|ltd|limited|llc|llp|lp|plc|gmbh|mbh|ag|kg|ug|sa|sas|sarl|srl|spa|"
    "bv|nv|oy|ab|as|pty|pte|kk"
)
FUNCTIONS = r"""
CREATE OR REPLACE FUNCTION crm_dup_person_key(first text, last text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT nullif(btrim(lower(regexp_replace(coalesce(first, '') || ' ' || coalesce(last, ''), '[ \t\n\r\f\v]+', ' ', 'g'))), '')
$$;
CREATE OR REPLACE FUNCTION crm_dup_company_key(name text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT nullif(coalesce(nullif(btrim(regexp_replace(' ' || b, '( (SUFFIXES))+$', '')), ''), b), '')
  FROM (SELECT btrim(regexp_replace(regexp_replace(replace(lower(coalesce(name, '')), '.', ''), '[!-/:-@\[-`{-~]', ' ', 'g'),
                                    '[ \t\n\r\f\v]+', ' ', 'g')) AS b) AS base
$$;
CREATE OR REPLACE FUNCTION crm_dup_phone_key(phone text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN length(d) >= 6 THEN d END FROM (SELECT regexp_replace(coalesce(phone, ''), '[^0-9]', '', 'g') AS d) AS x
$$;
CREATE OR REPLACE FUNCTION crm_dup_email_key(email text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE
    WHEN position('@' IN e) = 0 THEN NULL
    WHEN substring(e FROM '@([^@]*)$') IN ('gmail.com', 'googlemail.com')
      THEN replace(split_part(substring(e FROM '^(.*)@[^@]*$'), '+', 1), '.', '') || '@gmail.com'
    ELSE e END
  FROM (SELECT btrim(lower(coalesce(email, ''))) AS e) AS x
$$;
CREATE OR REPLACE FUNCTION crm_dup_host_one(value text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN h LIKE '%.%' THEN left(h, 253) END FROM (
    SELECT regexp_replace(rtrim(lower(substring(btrim(coalesce(value, ''))
      FROM '^(?:[A-Za-z][A-Za-z0-9+.-]*://)?(?:[^@/?#]*@)?([^/?#:@]+)')), '.'), '^www\.', '') AS h) AS x
$$;
CREATE OR REPLACE FUNCTION crm_dup_host_key(website text, domain text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT coalesce(crm_dup_host_one(website), crm_dup_host_one(domain))
$$;
CREATE OR REPLACE FUNCTION crm_company_dup_keys() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.name_key := crm_dup_company_key(NEW.name);
  NEW.phone_key := crm_dup_phone_key(NEW.phone);
  NEW.website_host := crm_dup_host_key(NEW.website, NEW.domain);
  RETURN NEW;
END $$;
CREATE OR REPLACE FUNCTION crm_contact_dup_keys() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.name_key := crm_dup_person_key(NEW.first_name, NEW.last_name);
  NEW.phone_key := crm_dup_phone_key(NEW.phone);
  NEW.email_key := crm_dup_email_key(NEW.email);
  RETURN NEW;
END $$;
""".replace("SUFFIXES", SUFFIXES)
TRIGGERS = """
CREATE TRIGGER crm_company_dup_keys BEFORE INSERT OR UPDATE OF name, phone, website, domain, name_key, phone_key,
  website_host ON crm_company FOR EACH ROW EXECUTE FUNCTION crm_company_dup_keys();
CREATE TRIGGER crm_contact_dup_keys BEFORE INSERT OR UPDATE OF first_name, last_name, phone, email, name_key,
  phone_key, email_key ON crm_contact FOR EACH ROW EXECUTE FUNCTION crm_contact_dup_keys();
CREATE INDEX crm_company_name_key_trgm ON crm_company USING gin (name_key gin_trgm_ops);
"""
DROP_FUNCTIONS = """
DROP INDEX IF EXISTS crm_company_name_key_trgm;
DROP TRIGGER IF EXISTS crm_company_dup_keys ON crm_company;
DROP TRIGGER IF EXISTS crm_contact_dup_keys ON crm_contact;
DROP FUNCTION IF EXISTS crm_company_dup_keys(), crm_contact_dup_keys(), crm_dup_host_key(text, text),
  crm_dup_host_one(text), crm_dup_email_key(text), crm_dup_phone_key(text), crm_dup_company_key(text),
  crm_dup_person_key(text, text);
"""
# The keys of the existing rows, filled by rewriting each table once (ALTER COLUMN ... TYPE ... USING):
# a million-row UPDATE would write a second version of every row and an entry into every index for
# it; the rewrite builds the table and its indexes afresh and fires no trigger. On the benchmark's
# data it takes 35 s (with UPDATEs the whole migration took 5 minutes, now under 2). It runs before
# the triggers exist, so nothing is computed twice.
FILL_KEYS = """
ALTER TABLE crm_company
  ALTER COLUMN name_key TYPE varchar(200) USING crm_dup_company_key(name),
  ALTER COLUMN phone_key TYPE varchar(50) USING crm_dup_phone_key(phone),
  ALTER COLUMN website_host TYPE varchar(253) USING crm_dup_host_key(website, domain);
ALTER TABLE crm_contact
  ALTER COLUMN name_key TYPE varchar(201) USING crm_dup_person_key(first_name, last_name),
  ALTER COLUMN phone_key TYPE varchar(50) USING crm_dup_phone_key(phone),
  ALTER COLUMN email_key TYPE varchar(254) USING crm_dup_email_key(email);
"""


def _equal_pairs(table: str, key: str, reason: str, weight: float) -> str:
    """Pairs sharing `key`, in groups of 2 to 100 rows (a key more common than that means nothing)."""
    return f"""
  SELECT a.entity_id, a.id AS first_id, b.id AS second_id, '{reason}' AS reason, {weight}::float8 AS weight
  FROM (SELECT entity_id, {key} FROM {table} WHERE {key} IS NOT NULL GROUP BY 1, 2 HAVING count(*) BETWEEN 2 AND 100) g
  JOIN {table} a ON a.entity_id = g.entity_id AND a.{key} = g.{key}
  JOIN {table} b ON b.entity_id = g.entity_id AND b.{key} = g.{key} AND a.id < b.id"""


def _insert_pairs(table: str, candidates: list[str]) -> str:
    return f"""
INSERT INTO {table} (id, entity_id, created_at, updated_at, first_id, second_id, reasons, score)
SELECT gen_random_uuid(), entity_id, now(), now(), first_id, second_id,
  to_jsonb(array_agg(reason ORDER BY weight DESC, reason)),
  round((1 - exp(sum(ln(1 - weight))))::numeric, 4)::float8
FROM ({" UNION ALL ".join(candidates)}) AS candidates
GROUP BY entity_id, first_id, second_id"""


COLLEAGUES = """
  SELECT DISTINCT a.entity_id, a.id AS first_id, b.id AS second_id,
    CASE WHEN a.name_key = b.name_key THEN 'same_name_same_company' ELSE 'similar_name' END AS reason,
    CASE WHEN a.name_key = b.name_key THEN 0.85 ELSE 0.6 END::float8 AS weight
  FROM crm_companymembership ma
  JOIN crm_companymembership mb ON mb.company_id = ma.company_id AND ma.contact_id < mb.contact_id
  JOIN crm_contact a ON a.id = ma.contact_id
  JOIN crm_contact b ON b.id = mb.contact_id
  WHERE a.name_key IS NOT NULL AND b.name_key IS NOT NULL
    AND (a.name_key = b.name_key OR similarity(a.name_key, b.name_key) >= 0.8)"""
SIMILAR_COMPANIES = """
  SELECT a.entity_id, a.id AS first_id, b.id AS second_id, 'similar_name' AS reason, 0.6::float8 AS weight
  FROM crm_company a JOIN crm_company b ON b.name_key % a.name_key AND b.entity_id = a.entity_id AND a.id < b.id
  WHERE a.name_key IS NOT NULL AND b.name_key <> a.name_key AND similarity(a.name_key, b.name_key) >= 0.8"""
SIMILAR_COMPANIES_LIMIT = 200_000


def keys_and_pairs(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return  # SQLite (the demo): the models' save() keeps the keys; the seeder rebuilds the pairs
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(FUNCTIONS)
        cursor.execute(FILL_KEYS)
        cursor.execute(TRIGGERS)
        contacts = [
            _equal_pairs("crm_contact", "email_key", "similar_email", 0.9),
            _equal_pairs("crm_contact", "phone_key", "same_phone", 0.6),
            COLLEAGUES,
        ]
        cursor.execute(_insert_pairs("crm_contactduplicate", contacts))
        companies = [
            _equal_pairs("crm_company", "website_host", "same_website_host", 0.9),
            _equal_pairs("crm_company", "name_key", "same_name", 0.85),
            _equal_pairs("crm_company", "phone_key", "same_phone", 0.6),
        ]
        cursor.execute("SELECT count(*) FROM crm_company")
        if cursor.fetchone()[0] <= SIMILAR_COMPANIES_LIMIT:
            cursor.execute("SET LOCAL pg_trgm.similarity_threshold = 0.8")
            companies.append(SIMILAR_COMPANIES)
        cursor.execute(_insert_pairs("crm_companyduplicate", companies))
        for table, name in (
            ("crm_contactduplicate", "contact_duplicate"),
            ("crm_companyduplicate", "company_duplicate"),
        ):
            cursor.execute(counting_triggers_sql(table, [f"'{name}'"])[0])
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        if cursor.fetchone()[0]:
            cursor.execute("ALTER FUNCTION similarity_op(text, text) LEAKPROOF")
        else:
            logger.warning(
                "Not a superuser: similar company names are found by scanning under row-level security until "
                "a superuser runs ALTER FUNCTION similarity_op(text, text) LEAKPROOF (docs/operations.md)."
            )


def drop_keys_and_pairs(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for table, name in (
            ("crm_contactduplicate", "contact_duplicate"),
            ("crm_companyduplicate", "company_duplicate"),
        ):
            cursor.execute(counting_triggers_sql(table, [f"'{name}'"])[1])
        cursor.execute(DROP_FUNCTIONS)


class Migration(migrations.Migration):
    dependencies = [
        ("axiomatic", "0007_change_feed_numbering_by_id"),
        ("crm", "0018_imports"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    atomic = True

    operations = [
        migrations.CreateModel(
            name="CompanyDuplicate",
            fields=[
                ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                ("reasons", models.JSONField(default=list)),
                ("score", models.FloatField()),
            ],
            options={
                "ordering": [models.OrderBy(models.F("score"), descending=True), "id"],
            },
        ),
        migrations.CreateModel(
            name="ContactDuplicate",
            fields=[
                ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                ("reasons", models.JSONField(default=list)),
                ("score", models.FloatField()),
            ],
            options={
                "ordering": [models.OrderBy(models.F("score"), descending=True), "id"],
            },
        ),
        migrations.CreateModel(
            name="DuplicateDismissal",
            fields=[
                ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                ("kind", models.CharField(choices=[("contact", "Contact"), ("company", "Company")], max_length=10)),
                ("first_id", models.UUIDField()),
                ("second_id", models.UUIDField()),
            ],
        ),
        migrations.CreateModel(
            name="MergedRecord",
            fields=[
                ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                ("kind", models.CharField(choices=[("contact", "Contact"), ("company", "Company")], max_length=10)),
                ("merged_id", models.UUIDField()),
                ("survivor_id", models.UUIDField()),
            ],
        ),
        migrations.AddField(
            model_name="company",
            name="name_key",
            field=models.CharField(blank=True, editable=False, max_length=200, null=True),
        ),
        migrations.AddField(
            model_name="company",
            name="phone_key",
            field=models.CharField(blank=True, editable=False, max_length=50, null=True),
        ),
        migrations.AddField(
            model_name="company",
            name="website_host",
            field=models.CharField(blank=True, editable=False, max_length=253, null=True),
        ),
        migrations.AddField(
            model_name="contact",
            name="email_key",
            field=models.CharField(blank=True, editable=False, max_length=254, null=True),
        ),
        migrations.AddField(
            model_name="contact",
            name="name_key",
            field=models.CharField(blank=True, editable=False, max_length=201, null=True),
        ),
        migrations.AddField(
            model_name="contact",
            name="phone_key",
            field=models.CharField(blank=True, editable=False, max_length=50, null=True),
        ),
        migrations.AddIndex(
            model_name="company",
            index=models.Index(fields=["entity", "name_key"], name="company_entity_name_key_idx"),
        ),
        migrations.AddIndex(
            model_name="company",
            index=models.Index(fields=["entity", "phone_key"], name="company_entity_phone_key_idx"),
        ),
        migrations.AddIndex(
            model_name="company",
            index=models.Index(fields=["entity", "website_host"], name="company_entity_host_key_idx"),
        ),
        migrations.AddIndex(
            model_name="contact",
            index=models.Index(fields=["entity", "name_key"], name="contact_entity_name_key_idx"),
        ),
        migrations.AddIndex(
            model_name="contact",
            index=models.Index(fields=["entity", "phone_key"], name="contact_entity_phone_key_idx"),
        ),
        migrations.AddIndex(
            model_name="contact",
            index=models.Index(fields=["entity", "email_key"], name="contact_entity_email_key_idx"),
        ),
        migrations.AddField(
            model_name="companyduplicate",
            name="entity",
            field=models.ForeignKey(
                db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name="+", to="axiomatic.entity"
            ),
        ),
        migrations.AddField(
            model_name="companyduplicate",
            name="first",
            field=models.ForeignKey(
                db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name="+", to="crm.company"
            ),
        ),
        migrations.AddField(
            model_name="companyduplicate",
            name="second",
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="+", to="crm.company"),
        ),
        migrations.AddField(
            model_name="contactduplicate",
            name="entity",
            field=models.ForeignKey(
                db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name="+", to="axiomatic.entity"
            ),
        ),
        migrations.AddField(
            model_name="contactduplicate",
            name="first",
            field=models.ForeignKey(
                db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name="+", to="crm.contact"
            ),
        ),
        migrations.AddField(
            model_name="contactduplicate",
            name="second",
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="+", to="crm.contact"),
        ),
        migrations.AddField(
            model_name="duplicatedismissal",
            name="entity",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="+", to="axiomatic.entity"
            ),
        ),
        migrations.AddField(
            model_name="mergedrecord",
            name="entity",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="+", to="axiomatic.entity"
            ),
        ),
        migrations.AddIndex(
            model_name="companyduplicate",
            index=models.Index(
                models.F("entity"),
                models.OrderBy(models.F("score"), descending=True),
                models.F("id"),
                name="companyduplicate_page_idx",
            ),
        ),
        migrations.AddConstraint(
            model_name="companyduplicate",
            constraint=models.UniqueConstraint(fields=("first", "second"), name="companyduplicate_pair_uniq"),
        ),
        migrations.AddIndex(
            model_name="contactduplicate",
            index=models.Index(
                models.F("entity"),
                models.OrderBy(models.F("score"), descending=True),
                models.F("id"),
                name="contactduplicate_page_idx",
            ),
        ),
        migrations.AddConstraint(
            model_name="contactduplicate",
            constraint=models.UniqueConstraint(fields=("first", "second"), name="contactduplicate_pair_uniq"),
        ),
        migrations.AddConstraint(
            model_name="duplicatedismissal",
            constraint=models.UniqueConstraint(
                fields=("entity", "kind", "first_id", "second_id"), name="duplicatedismissal_uniq"
            ),
        ),
        migrations.AddIndex(
            model_name="mergedrecord",
            index=models.Index(fields=["entity", "kind", "survivor_id"], name="mergedrecord_survivor_idx"),
        ),
        migrations.AddConstraint(
            model_name="mergedrecord",
            constraint=models.UniqueConstraint(fields=("entity", "kind", "merged_id"), name="mergedrecord_uniq"),
        ),
        migrations.RunPython(keys_and_pairs, drop_keys_and_pairs, elidable=False),
    ]
