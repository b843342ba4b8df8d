"""Browser pages under /settings/ that belong to the CRM: the entity's custom fields."""

from django.urls import path

from crm.pages import custom_fields as pages

urlpatterns = [
    path("custom-fields", pages.custom_fields_page, name="settings-custom-fields"),
    path("custom-fields/<uuid:field_id>/edit", pages.custom_field_edit, name="settings-custom-field-edit"),
    path("custom-fields/<uuid:field_id>/move", pages.custom_field_move, name="settings-custom-field-move"),
    path("custom-fields/<uuid:field_id>/delete", pages.custom_field_remove, name="settings-custom-field-delete"),
]
