"""URL map: the API under /api/, documentation, admin, health and the browser pages."""

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from axiomatic import views

urlpatterns = [
    path("api/crm/", include("crm.api.urls")),
    path("api/schema", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    # Anything else under /api/ is a JSON 404, whatever DEBUG says.
    re_path(r"^api/", views.api_not_found),
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
]

handler404 = "axiomatic.views.handler404"
handler500 = "axiomatic.views.handler500"
