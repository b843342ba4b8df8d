"""The staff admin's site: every admin view runs under the named row-level-security bypass.

Staff manage every entity's rows (entities, members, keys, CRM data), so after the admin's own
staff check each view runs in `bypass_rls`; the sign-in page is not wrapped. Installed through
`axiomatic.apps.AdminConfig` in INSTALLED_APPS.
"""

from __future__ import annotations

from django.contrib import admin

from axiomatic.rls import bypass_rls

ADMIN_BYPASS_REASON = "staff admin: staff manage the rows of every entity"


class AdminSite(admin.AdminSite):
    def admin_view(self, view, cacheable=False):
        return super().admin_view(bypass_rls(ADMIN_BYPASS_REASON)(view), cacheable)
