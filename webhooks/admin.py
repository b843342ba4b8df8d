"""Staff admin for webhook endpoints and their delivery log: read-only (writes go through the
API or /settings/webhooks, which check URLs); endpoints may be deleted. Secrets are never shown."""

from django.contrib import admin

from axiomatic.admin import EntityScopedAdmin
from webhooks.models import WebhookDelivery, WebhookEndpoint


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(EntityScopedAdmin):
    list_display = ["url", "entity", "enabled", "delivered_seq", "failed_attempts", "next_attempt_at", "created_at"]
    list_filter = ["enabled", "entity"]
    search_fields = ["url", "description"]
    ordering = ["created_at", "id"]
    exclude = ["secret_encrypted", "previous_secret_encrypted", "claim_token"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields if f.name not in self.exclude]

    def has_add_permission(self, request):
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(EntityScopedAdmin):
    list_display = ["attempted_at", "event_type", "seq", "attempt", "status", "response_status", "endpoint", "entity"]
    list_filter = ["status", "entity"]
    search_fields = ["event_id", "event_type"]
    ordering = ["-attempted_at", "-id"]
    list_select_related = ["entity", "endpoint"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
