"""Test-only URL map for tests/test_rls.py: views whose queries forget the entity on purpose.

Each view runs an *unscoped* ORM query, so whatever it gets back is what PostgreSQL's row-level
security lets through. Used with `@pytest.mark.urls("tests.rls_urls")`; never mounted by the app.
"""

from django.db import DatabaseError, transaction
from django.http import JsonResponse
from django.urls import path
from rest_framework.response import Response

from axiomatic.api.viewsets import EntityScopedViewSet
from axiomatic.pages import entity_page
from axiomatic.urls import urlpatterns as project_urlpatterns
from crm.models import Company


def _unscoped(request) -> dict:
    """Every company the database shows this request, and what a write for another entity does."""
    seen = sorted(Company.objects.all().values_list("name", flat=True))  # no entity filter at all
    foreign_id = request.GET.get("foreignEntity")
    outcome = {"seen": seen}
    if foreign_id:
        try:
            with transaction.atomic():
                Company.objects.create(entity_id=foreign_id, name="Smuggled into another entity")
            outcome["insert"] = "accepted"
        except DatabaseError as exc:
            outcome["insert"] = str(exc).splitlines()[0]
        outcome["updated"] = Company.objects.filter(entity_id=foreign_id).update(name="Renamed from outside")
        outcome["deleted"] = Company.objects.filter(entity_id=foreign_id).delete()[0]
    return outcome


class UnscopedApiView(EntityScopedViewSet):
    queryset = Company.objects.all()

    def list(self, request, *args, **kwargs):
        return Response(_unscoped(request))


@entity_page
def unscoped_page(request):
    return JsonResponse(_unscoped(request))


def no_entity_view(request):
    """A view that never names an entity (no API entity check, no page decorator)."""
    return JsonResponse(_unscoped(request))


urlpatterns = [
    path("api/crm/test-rls-unscoped", UnscopedApiView.as_view({"get": "list"})),
    path("test-rls/page", unscoped_page),
    path("test-rls/no-entity", no_entity_view),
    *project_urlpatterns,
]
