"""Registers the serializers as the representation services record (timeline, change feed)."""

from __future__ import annotations

from axiomatic.representations import register_representation
from crm.api.activities import ActivitySerializer
from crm.api.email import OutboundEmailSerializer
from crm.models import Activity, OutboundEmail


def register() -> None:
    register_representation(Activity, lambda activity: dict(ActivitySerializer(activity).data))
    register_representation(OutboundEmail, lambda email: dict(OutboundEmailSerializer(email).data))
