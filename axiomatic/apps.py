from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class AxiomaticConfig(AppConfig):
    name = "axiomatic"
    verbose_name = "Accounts and entities"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from django.core.signals import got_request_exception
        from django.db.backends.signals import connection_created
        from django.db.models.signals import post_migrate, pre_migrate

        from axiomatic import rls, signals  # noqa: F401  (signals: receivers connect on import)
        from axiomatic.ops.database import on_connection_created, on_post_migrate, on_pre_migrate
        from axiomatic.ops.middleware import on_request_exception

        connection_created.connect(on_connection_created, dispatch_uid="axiomatic-statement-timeout")
        pre_migrate.connect(on_pre_migrate, sender=self, dispatch_uid="axiomatic-migrate-statement-timeout")
        # Row-level security: the app role on every new connection, policies after every migrate.
        connection_created.connect(rls.on_connection_created, dispatch_uid="axiomatic-rls-app-role")
        post_migrate.connect(rls.on_post_migrate, sender=self, dispatch_uid="axiomatic-rls-install")
        # After the other post_migrate work: migrations ran without a statement timeout, restore it.
        post_migrate.connect(on_post_migrate, sender=self, dispatch_uid="axiomatic-migrate-statement-timeout")
        got_request_exception.connect(on_request_exception, dispatch_uid="axiomatic-database-unavailable")


class AdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with `axiomatic.admin_site.AdminSite` (each view in the staff user's entities)."""

    default = False  # not the config of the `axiomatic` entry in INSTALLED_APPS
    default_site = "axiomatic.admin_site.AdminSite"
