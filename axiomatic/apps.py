from django.apps import AppConfig


class AxiomaticConfig(AppConfig):
    name = "axiomatic"
    verbose_name = "Accounts and entities"
    default_auto_field = "django.db.models.BigAutoField"
