"""Browser pages under /settings/: the current user's API keys for the current entity."""

from django.urls import path

from apikeys import views

urlpatterns = [
    path("api-keys", views.api_keys, name="api-keys"),
    path("api-keys/<uuid:key_id>/revoke", views.api_key_revoke_confirm, name="api-key-revoke"),
]
