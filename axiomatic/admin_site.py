"""The staff admin's site: every admin view runs inside the entities its staff user may see.

- A superuser runs the whole service: their admin views run under the named row-level-security
  bypass.
- Any other staff user works only on the entities where they are admin or owner
  (`administered_entity_ids`). Their admin views run in `entities_scope` of exactly those
  entities, so besides the admin classes' own scoping (`axiomatic.admin.StaffScopeMixin`),
  PostgreSQL refuses every other entity's rows: a scope forgotten in an admin class shows
  nothing rather than another tenant's data.

The scope also covers the rendering of the template response a view returns (whose lazy queries
Django would otherwise run after the view, outside it). The sign-in page is not wrapped.
Installed through `axiomatic.apps.AdminConfig` in INSTALLED_APPS.
"""

from __future__ import annotations

from functools import update_wrapper

from django.contrib import admin
from django.template.response import SimpleTemplateResponse

from axiomatic.rls import bypass_rls, entities_scope
from axiomatic.tenancy.resolve import administered_entity_ids

ADMIN_BYPASS_REASON = "staff admin of a superuser: superusers manage the rows of every entity"


def _in_staff_scope(view):
    def inner(request, *args, **kwargs):
        ids = administered_entity_ids(request)
        scope = bypass_rls(ADMIN_BYPASS_REASON) if ids is None else entities_scope(sorted(ids, key=str))
        with scope:
            response = view(request, *args, **kwargs)
            if isinstance(response, SimpleTemplateResponse):
                response.render()
            return response

    return update_wrapper(inner, view)


class AdminSite(admin.AdminSite):
    def admin_view(self, view, cacheable=False):
        return super().admin_view(_in_staff_scope(view), cacheable)
