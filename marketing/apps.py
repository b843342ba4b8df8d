from django.apps import AppConfig


class MarketingConfig(AppConfig):
    name = "marketing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from axiomatic.mounts import register_api

        register_api(prefix="/api/marketing/", scope_family="marketing", tag_prefix="marketing-")

        from marketing.api import representations

        representations.register()
