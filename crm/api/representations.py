"""Registers the serializers as the representation services record (timeline, change feed), and
the CRM's feed objects (`axiomatic.changes`): each one's `data` is its GET's answer, unwrapped."""

from __future__ import annotations

import threading

from axiomatic.changes import register_object_type
from axiomatic.representations import register_representation
from crm.api.activities import ActivitySerializer
from crm.api.companies import CompanySerializer
from crm.api.contacts import ContactSerializer, MembershipSerializer
from crm.api.email import OutboundEmailSerializer
from crm.api.leads import LeadSerializer
from crm.api.pipeline import PipelineStageSerializer
from crm.models import Activity, Company, CompanyMembership, Contact, Lead, OutboundEmail, PipelineStage
from crm.selectors.pipeline import stages_with_lead_counts

_local = threading.local()


def _serializer(serializer_class, *, many: bool = False):
    """One bound serializer per class and thread, reused: building a serializer's fields costs
    more than representing a row with them (recording takes a snapshot before and after a write)."""
    key = (serializer_class, many)
    cache = _local.__dict__.setdefault("serializers", {})
    if key not in cache:
        cache[key] = serializer_class(many=True) if many else serializer_class()
    return cache[key]


def _contact(contact: Contact) -> dict:
    # `companyId` read from the rows as they are now: an annotation loaded before a switch of the
    # primary membership would be stale.
    fresh = Contact(**{f.attname: getattr(contact, f.attname) for f in Contact._meta.concrete_fields})
    return dict(_serializer(ContactSerializer).to_representation(fresh))


def _contacts(contacts: list[Contact]) -> list[dict]:
    """Many contacts at once (bulk writes): every `companyId` from one query, not one per row."""
    primary = dict(
        CompanyMembership.objects.filter(contact_id__in=[row.pk for row in contacts], is_primary=True).values_list(
            "contact_id", "company_id"
        )
    )
    fresh = []
    for contact in contacts:
        row = Contact(**{f.attname: getattr(contact, f.attname) for f in Contact._meta.concrete_fields})
        row.primary_company_id = primary.get(contact.pk)
        fresh.append(row)
    return [dict(item) for item in _serializer(ContactSerializer, many=True).to_representation(fresh)]


def _stage(stage: PipelineStage) -> dict:
    if not hasattr(stage, "lead_count"):  # loaded without the figure (not through the selector)
        stage.lead_count = (
            stages_with_lead_counts(entity=stage.entity_id).filter(pk=stage.pk).values_list("lead_count", flat=True)
        ).first() or 0
    return dict(_serializer(PipelineStageSerializer).to_representation(stage))


def _one_and_many(serializer_class):
    """(one, many): a row as its GET answers it, and a batch through the lists' fast path."""
    return (
        lambda row: dict(_serializer(serializer_class).to_representation(row)),
        lambda rows: [dict(item) for item in _serializer(serializer_class, many=True).to_representation(rows)],
    )


def register() -> None:
    for model, serializer_class in (
        (Activity, ActivitySerializer),
        (OutboundEmail, OutboundEmailSerializer),
        (Company, CompanySerializer),
        (CompanyMembership, MembershipSerializer),
        (Lead, LeadSerializer),
    ):
        one, many = _one_and_many(serializer_class)
        register_representation(model, one, many=many)
    register_representation(Contact, _contact, many=_contacts)
    register_representation(PipelineStage, _stage)

    register_object_type(Company, "company")
    register_object_type(Contact, "contact")
    register_object_type(
        CompanyMembership,
        "company_membership",
        loader=lambda rows: rows.select_related("company"),
        # A contact's companyId is its primary membership's company.
        touches=lambda rows: {Contact: set(rows.filter(is_primary=True).values_list("contact_id", flat=True))},
    )
    register_object_type(
        Lead, "lead", loader=lambda rows: rows.select_related("stage"), extra_actions=("stage_changed",)
    )
    register_object_type(Activity, "activity")
    register_object_type(PipelineStage, "pipeline_stage")
    register_object_type(OutboundEmail, "outbound_email", extra_actions=("sent", "failed", "replied"))
