"""Routes of `/api/marketing/`."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from marketing.api.lists import MarketingListMemberViewSet, MarketingListViewSet

router = SimpleRouter(trailing_slash=False)
router.register("lists", MarketingListViewSet, basename="marketing-list")

urlpatterns = [
    *router.urls,
    path(
        "lists/<uuid:listId>/members",
        MarketingListMemberViewSet.as_view({"get": "list"}),
        name="marketing-list-members",
    ),
    path(
        "lists/<uuid:listId>/members/<uuid:memberId>",
        MarketingListMemberViewSet.as_view({"delete": "destroy"}),
        name="marketing-list-member-detail",
    ),
    path(
        "lists/<uuid:listId>/members/<uuid:memberId>/unsubscribe",
        MarketingListMemberViewSet.as_view({"post": "unsubscribe"}),
        name="marketing-list-member-unsubscribe",
    ),
]
