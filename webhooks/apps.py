from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks and the change feed"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from webhooks import services, tasks  # noqa: F401  (tasks: registers the beat schedule)

        services.connect()  # recorded changes kick the entity's endpoints after commit

        from axiomatic.crypto import register_encrypted_fields
        from webhooks.models import WebhookEndpoint

        register_encrypted_fields(WebhookEndpoint, "secret_encrypted", "previous_secret_encrypted")
