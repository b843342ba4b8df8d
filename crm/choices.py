"""Enumerations of the CRM domain, shared by models, serializers and filters."""

from django.db import models


class CompanyRole(models.TextChoices):
    PROSPECT = "prospect", "Prospect"
    CUSTOMER = "customer", "Customer"
    VENDOR = "vendor", "Vendor"
    BOTH = "both", "Both"


class CompanyStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    INACTIVE = "inactive", "Inactive (archived)"


class StageKind(models.TextChoices):
    OPEN = "open", "Open"
    WON = "won", "Won"
    LOST = "lost", "Lost"


class ColorKey(models.TextChoices):
    SLATE = "slate"
    GRAY = "gray"
    RED = "red"
    ORANGE = "orange"
    AMBER = "amber"
    YELLOW = "yellow"
    LIME = "lime"
    GREEN = "green"
    EMERALD = "emerald"
    TEAL = "teal"
    CYAN = "cyan"
    SKY = "sky"
    BLUE = "blue"
    INDIGO = "indigo"
    VIOLET = "violet"
    PURPLE = "purple"
    FUCHSIA = "fuchsia"
    PINK = "pink"
    ROSE = "rose"


class ActivityType(models.TextChoices):
    CALL = "call", "Call"
    EMAIL = "email", "Email"
    MEETING = "meeting", "Meeting"
    NOTE = "note", "Note"
    TASK = "task", "Task"


class ActivityDirection(models.TextChoices):
    """Which way an `email` activity went: sent from a connected mailbox, or received in one."""

    OUTBOUND = "outbound", "Outbound"
    INBOUND = "inbound", "Inbound"


class ActivityStatus(models.TextChoices):
    OPEN = "open", "Open"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"


class LeadEventKind(models.TextChoices):
    LEAD_CREATED = "lead_created"
    STAGE_CHANGED = "stage_changed"
    FIELD_CHANGED = "field_changed"
    ACTIVITY_LOGGED = "activity_logged"
    EMAIL_QUEUED = "email_queued"
    EMAIL_SENT = "email_sent"
    EMAIL_FAILED = "email_failed"
    EMAIL_RECEIVED = "email_received"


class ActorType(models.TextChoices):
    USER = "user"
    API_KEY = "apiKey"
    SYSTEM = "system"


class EmailChannel(models.TextChoices):
    GMAIL = "gmail", "Gmail"
    OUTLOOK = "outlook", "Outlook"


class ConnectionStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    EXPIRED = "expired", "Expired (reconnect needed)"
    REVOKED = "revoked", "Revoked"


class EmailStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
