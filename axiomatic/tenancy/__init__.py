"""Tenancy in one place: which entity a row, a request and a transaction belong to.

- `axiomatic.tenancy.models`: `TenantModel` and `TenantQuerySet.for_entity`, the rows' side.
- `axiomatic.tenancy.resolve`: the one resolver of the entity a request names (query string,
  JSON body, `x-entity-id` header, the pages' session) and of the caller's membership there, with
  one set of rules and statuses for the API, API keys, idempotency, the pages, the mailbox
  callback and the admin.
- `axiomatic.tenancy.database`: the one way to tell the database that entity (row-level
  security).
"""

from axiomatic.tenancy.models import TenantModel, TenantQuerySet

__all__ = ["TenantModel", "TenantQuerySet"]
