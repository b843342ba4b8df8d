"""The staff admin's site: every admin view runs under the named row-level-security bypass.

Staff manage every entity's rows (entities, members, keys, CRM data), so after the admin's own
staff check each view runs in `bypass_rls`, and so does the rendering of the template response
it returns (whose lazy queries Django would otherwise run after the view, outside the bypass);
the sign-in page is not wrapped. Installed through `axiomatic.apps.AdminConfig` in INSTALLED_APPS.
"""

from __future__ import annotations

from functools import update_wrapper

from django.contrib import admin
from django.template.response import SimpleTemplateResponse

from axiomatic.rls import bypass_rls

ADMIN_BYPASS_REASON = "staff admin: staff manage the rows of every entity"


def _bypassed(view):
    def inner(request, *args, **kwargs):
        with bypass_rls(ADMIN_BYPASS_REASON):
            response = view(request, *args, **kwargs)
            if isinstance(response, SimpleTemplateResponse):
                response.render()
            return response

    return update_wrapper(inner, view)


class AdminSite(admin.AdminSite):
    def admin_view(self, view, cacheable=False):
        return super().admin_view(_bypassed(view), cacheable)
