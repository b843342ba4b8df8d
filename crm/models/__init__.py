"""CRM models, one module per part of the domain."""

from crm.models.activities import Activity
from crm.models.companies import Company
from crm.models.contacts import CompanyMembership, Contact
from crm.models.custom_fields import CustomField, CustomFieldObjectType, CustomFieldType
from crm.models.duplicates import CompanyDuplicate, ContactDuplicate, DuplicateDismissal, MergedRecord
from crm.models.email import (
    OutboundEmail,
    OutboundEmailConnection,
)
from crm.models.imports import Import, ImportFileSlice, ImportRowError
from crm.models.leads import Lead, LeadEvent
from crm.models.pipeline import PipelineFigure, PipelineStage

__all__ = [
    "Activity",
    "Company",
    "CompanyDuplicate",
    "CompanyMembership",
    "Contact",
    "ContactDuplicate",
    "DuplicateDismissal",
    "Import",
    "ImportFileSlice",
    "ImportRowError",
    "CustomField",
    "CustomFieldObjectType",
    "CustomFieldType",
    "Lead",
    "LeadEvent",
    "MergedRecord",
    "OutboundEmail",
    "OutboundEmailConnection",
    "PipelineFigure",
    "PipelineStage",
]
