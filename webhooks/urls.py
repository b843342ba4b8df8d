"""Browser page under /settings/: the entity's webhook endpoints (admins and owners)."""

from django.urls import path

from webhooks import views

urlpatterns = [
    path("webhooks", views.webhooks_page, name="webhooks"),
]
