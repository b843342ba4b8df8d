"""The sales pages under /crm/: dashboard, tasks, companies, contacts, search, duplicates."""

from django.urls import path

from crm.pages import companies, contacts, dashboard, duplicates, imports, leads, search, tasks

urlpatterns = [
    path("dashboard", dashboard.dashboard, name="crm-dashboard"),
    path("tasks", tasks.tasks, name="crm-tasks"),
    path("tasks/<uuid:task_id>/done", tasks.task_done, name="crm-task-done"),
    path("tasks/<uuid:task_id>/reopen", tasks.task_reopen, name="crm-task-reopen"),
    path("tasks/<uuid:task_id>/reschedule", tasks.task_reschedule, name="crm-task-reschedule"),
    path("companies", companies.companies, name="crm-companies"),
    path("companies/new", companies.company_new, name="crm-company-new"),
    path("companies/options", companies.company_options, name="crm-company-options"),
    path("companies/<uuid:company_id>", companies.company_detail, name="crm-company"),
    path("companies/<uuid:company_id>/edit", companies.company_edit, name="crm-company-edit"),
    path("companies/<uuid:company_id>/activities", companies.company_activities, name="crm-company-activities"),
    path("contacts", contacts.contacts, name="crm-contacts"),
    path("contacts/new", contacts.contact_new, name="crm-contact-new"),
    path("contacts/<uuid:contact_id>", contacts.contact_detail, name="crm-contact"),
    path("contacts/<uuid:contact_id>/edit", contacts.contact_edit, name="crm-contact-edit"),
    path("contacts/<uuid:contact_id>/activities", contacts.contact_activities, name="crm-contact-activities"),
    path("leads/<uuid:lead_id>/custom-fields", leads.lead_custom_fields_edit, name="crm-lead-custom-fields"),
    path("search", search.search, name="crm-search"),
    path("duplicates", duplicates.duplicates, name="crm-duplicates"),
    path("duplicates/compare", duplicates.duplicate_compare, name="crm-duplicate-compare"),
    path("duplicates/merge", duplicates.duplicate_merge, name="crm-duplicate-merge"),
    path("duplicates/dismiss", duplicates.duplicate_dismiss, name="crm-duplicate-dismiss"),
    path("<str:kind_path>/<uuid:record_id>/merge-with", duplicates.merge_with, name="crm-merge-with"),
    path("import", imports.import_page, name="crm-import"),
    path("import/<uuid:import_id>", imports.import_detail, name="crm-import-detail"),
    path("import/<uuid:import_id>/progress", imports.import_progress, name="crm-import-progress"),
    path("import/<uuid:import_id>/run", imports.import_run, name="crm-import-run"),
    path("import/<uuid:import_id>/cancel", imports.import_stop, name="crm-import-cancel"),
]
