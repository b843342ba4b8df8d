"""`/api/crm/prospecting/*`: prospecting from the CRM into marketing lists.

The route sits under /api/crm (scope write:crm) because prospecting is a CRM action, but the
rules are the marketing app's, so the marketing app owns it: the CRM does not depend on marketing.
"""

from rest_framework.routers import SimpleRouter

from marketing.api.prospecting import ProspectingViewSet

router = SimpleRouter(trailing_slash=False)
router.register("prospecting", ProspectingViewSet, basename="prospecting")

urlpatterns = router.urls
