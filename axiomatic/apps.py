from django.apps import AppConfig


class AxiomaticConfig(AppConfig):
    name = "axiomatic"
    verbose_name = "Accounts and entities"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from django.core.signals import got_request_exception
        from django.db.backends.signals import connection_created

        from axiomatic.ops.database import on_connection_created
        from axiomatic.ops.middleware import on_request_exception

        connection_created.connect(on_connection_created, dispatch_uid="axiomatic-statement-timeout")
        got_request_exception.connect(on_request_exception, dispatch_uid="axiomatic-database-unavailable")
