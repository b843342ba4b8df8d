"""URL map: the API under /api/, documentation, admin, health and the browser pages."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from django.views.generic import RedirectView

from axiomatic import health, pages, views
from axiomatic.api.docs import DocsView, SchemaView

urlpatterns = [
    path("api/crm/", include("crm.api.urls")),
    path("api/crm/", include("marketing.api.prospecting_urls")),
    path("api/crm/", include("webhooks.api.urls")),  # the change feed and webhook endpoints
    path("api/marketing/", include("marketing.api.urls")),
    path("api/schema", SchemaView.as_view(), name="schema"),
    path("api/docs", DocsView.as_view(url_name="schema"), name="docs"),
    # Anything else under /api/ is a JSON 404, whatever DEBUG says.
    re_path(r"^api/", views.api_not_found),
    path("healthz", health.healthz, name="healthz"),
    path("livez", health.livez, name="livez"),
    path("readyz", health.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    # Sign-in, sign-out and password change. No self-service password reset (README, "Passwords").
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/password_change/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path(
        "accounts/password_change/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    # Browser pages.
    path("", RedirectView.as_view(url="/crm/board", query_string=True), name="home"),
    path("entity/switch", pages.entity_switch, name="entity-switch"),
    path("crm/", include("crm.urls")),
    path("settings/", include("apikeys.urls")),
    path("settings/", include("webhooks.urls")),
    path("settings/", include("crm.settings_urls")),  # custom fields
]

handler400 = "axiomatic.views.handler400"
handler404 = "axiomatic.views.handler404"
handler500 = "axiomatic.views.handler500"
