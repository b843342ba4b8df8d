"""Routes of the change feed and the webhook endpoints, under `/api/crm/`."""

from rest_framework.routers import SimpleRouter

from webhooks.api.changes import ChangeFeedViewSet
from webhooks.api.endpoints import WebhookDeliveryViewSet, WebhookEndpointViewSet

router = SimpleRouter(trailing_slash=False)
router.register("changes", ChangeFeedViewSet, basename="change")
router.register("webhook-endpoints", WebhookEndpointViewSet, basename="webhook-endpoint")
router.register(
    r"webhook-endpoints/(?P<endpointId>[^/.]+)/deliveries", WebhookDeliveryViewSet, basename="webhook-delivery"
)

urlpatterns = router.urls
