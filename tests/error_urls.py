"""Test-only URL map: the project's routes plus views that fail on purpose (tests/test_errors.py).

Used with `@pytest.mark.urls("tests.error_urls")`; never mounted by the application.
"""

from django.urls import path

from axiomatic.api.viewsets import EntityScopedViewSet, ListMixin
from axiomatic.urls import handler404, handler500
from axiomatic.urls import urlpatterns as project_urlpatterns
from crm.models import Company

__all__ = ["handler404", "handler500", "urlpatterns"]


class ExplodingViewSet(ListMixin, EntityScopedViewSet):
    """Writes a row, then fails with an unexpected exception inside a DRF view."""

    queryset = Company.objects.all()
    list_key = "companies"

    def list(self, request, *args, **kwargs):
        Company.objects.create(entity=request.entity, name="Written before the crash")
        raise RuntimeError("secret internal detail")


def exploding_plain_view(request):
    """A plain Django view under /api/ (outside DRF) that fails."""
    Company.objects.create(entity_id=request.GET["entityId"], name="Written before the plain crash")
    raise RuntimeError("secret internal detail")


urlpatterns = [
    path("api/crm/test-explode", ExplodingViewSet.as_view({"get": "list"})),
    path("api/test-explode-plain", exploding_plain_view),
    *project_urlpatterns,
]
