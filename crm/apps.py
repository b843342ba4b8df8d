from django.apps import AppConfig


class CrmConfig(AppConfig):
    name = "crm"
    verbose_name = "CRM"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from axiomatic.mounts import register_api

        # /api/crm/ (also the change feed, webhooks and prospecting): keys need read:crm / write:crm.
        register_api(prefix="/api/crm/", scope_family="crm", idempotent_posts=True)

        from crm import signals  # noqa: F401  (connects the default-stages receiver)
        from crm.api import representations

        representations.register()

        from django.db.backends.signals import connection_created

        from crm.services.duplicates import register_sqlite_functions

        connection_created.connect(register_sqlite_functions, dispatch_uid="crm-sqlite-similarity")
        from crm.bulk import catalogue, tasks  # noqa: F401  (the import's fields and Celery tasks)

        catalogue.register()

        from axiomatic.crypto import register_encrypted_fields
        from crm.models import OutboundEmailConnection

        register_encrypted_fields(OutboundEmailConnection, "access_token_encrypted", "refresh_token_encrypted")
