"""Routes of `/api/crm/`. Each part of the domain registers its viewsets here."""

from rest_framework.routers import SimpleRouter

from crm.api.activities import ActivityViewSet, TaskViewSet
from crm.api.companies import CompanyViewSet
from crm.api.contacts import CompanyContactViewSet, ContactMembershipViewSet, ContactViewSet
from crm.api.custom_fields import CustomFieldViewSet
from crm.api.dashboard import DashboardViewSet
from crm.api.duplicates import CompanyDuplicateViewSet, ContactDuplicateViewSet
from crm.api.email import OutboundEmailConnectionViewSet, OutboundEmailViewSet
from crm.api.imports import ImportErrorViewSet, ImportViewSet
from crm.api.leads import LeadActivityViewSet, LeadTimelineViewSet, LeadViewSet
from crm.api.pipeline import PipelineStageViewSet

router = SimpleRouter(trailing_slash=False)
router.register("companies/duplicates", CompanyDuplicateViewSet, basename="company-duplicate")
router.register("contacts/duplicates", ContactDuplicateViewSet, basename="contact-duplicate")
router.register("companies", CompanyViewSet, basename="company")
router.register(r"companies/(?P<companyId>[^/.]+)/contacts", CompanyContactViewSet, basename="company-contact")
router.register("contacts", ContactViewSet, basename="contact")
router.register(
    r"contacts/(?P<contactId>[^/.]+)/company-memberships", ContactMembershipViewSet, basename="contact-membership"
)
router.register("custom-fields", CustomFieldViewSet, basename="custom-field")
router.register("dashboard", DashboardViewSet, basename="dashboard")
router.register("outbound-email-connections", OutboundEmailConnectionViewSet, basename="outbound-email-connection")
router.register("outbound-email", OutboundEmailViewSet, basename="outbound-email")
router.register("pipeline-stages", PipelineStageViewSet, basename="pipeline-stage")
router.register("leads", LeadViewSet, basename="lead")
router.register(r"leads/(?P<leadId>[^/.]+)/timeline", LeadTimelineViewSet, basename="lead-timeline")
router.register(r"leads/(?P<leadId>[^/.]+)/activities", LeadActivityViewSet, basename="lead-activity")
router.register("activities", ActivityViewSet, basename="activity")
router.register("tasks", TaskViewSet, basename="task")
router.register("imports", ImportViewSet, basename="import")
router.register(r"imports/(?P<importId>[^/.]+)/errors", ImportErrorViewSet, basename="import-error")

urlpatterns = router.urls
