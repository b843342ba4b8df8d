"""Routes of `/api/crm/`. Each part of the domain registers its viewsets here."""

from rest_framework.routers import SimpleRouter

from crm.api.companies import CompanyViewSet

router = SimpleRouter(trailing_slash=False)
router.register("companies", CompanyViewSet, basename="company")

urlpatterns = router.urls
