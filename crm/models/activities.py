from __future__ import annotations

from django.conf import settings
from django.db import models

from axiomatic.tenancy import TenantModel
from crm.choices import ActivityDirection, ActivityStatus, ActivityType


class Activity(TenantModel):
    """Something done or to do about a lead, company or contact: a call, email, meeting, note or task.

    Tasks are activities of type `task` with a `due_at` and an open/completed/cancelled status;
    keeping one table means the timeline, the dashboard and `/tasks` read one place.
    """

    type = models.CharField(max_length=10, choices=ActivityType.choices)
    subject = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=ActivityStatus.choices)
    occurred_at = models.DateTimeField()
    due_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    duration_minutes = models.PositiveIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=200, blank=True)
    lead = models.ForeignKey("crm.Lead", null=True, blank=True, on_delete=models.SET_NULL, related_name="activities")
    company = models.ForeignKey(
        "crm.Company", null=True, blank=True, on_delete=models.SET_NULL, related_name="activities"
    )
    contact = models.ForeignKey(
        "crm.Contact", null=True, blank=True, on_delete=models.SET_NULL, related_name="activities"
    )
    project_id = models.UUIDField(null=True, blank=True)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Emails only: sent from a connected mailbox, or received in one (crm.email.inbound).
    direction = models.CharField(max_length=10, choices=ActivityDirection.choices, null=True, blank=True)
    # A received email's identity within the entity (its RFC Message-ID, else the provider's id):
    # the unique constraint below records a message at most once, whichever mailbox read it first.
    message_key = models.CharField(max_length=500, null=True, blank=True, editable=False)

    class Meta:
        verbose_name_plural = "activities"
        ordering = ["-occurred_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["entity", "message_key"],
                condition=models.Q(message_key__isnull=False),
                name="activity_entity_message_uniq",
            )
        ]
        indexes = [
            models.Index(fields=["entity", "-occurred_at", "id"], name="activity_entity_time_idx"),
            # The staff admin's order, with the entity for row-level security from the index.
            models.Index(fields=["-occurred_at", "id"], include=["entity"], name="activity_time_idx"),
            models.Index(fields=["entity", "type", "status", "due_at"], name="activity_entity_task_idx"),
            # Filtered lists keep the list's order (newest occurredAt, id) inside each filter value.
            models.Index(fields=["entity", "type", "-occurred_at", "id"], name="activity_entity_type_time_idx"),
            models.Index(fields=["entity", "lead", "-occurred_at", "id"], name="activity_entity_lead_time_idx"),
            models.Index(fields=["entity", "company", "-occurred_at", "id"], name="activity_entity_comp_time_idx"),
            models.Index(fields=["entity", "contact", "-occurred_at", "id"], name="activity_entity_cont_time_idx"),
            # /tasks: dueAt ascending, undated last, per assignee.
            models.Index(fields=["entity", "assignee", "type", "due_at"], name="activity_entity_assignee_idx"),
            # Every task soonest due first, undated last (`GET /tasks` without a status).
            models.Index(
                fields=["entity", "due_at", "id"],
                condition=models.Q(type=ActivityType.TASK),
                name="activity_task_due_idx",
            ),
            # Someone's open tasks soonest due first (the tasks page's groups, the dashboard by
            # assignee): only open tasks, in the page's order, so a group reads its 51 rows.
            models.Index(
                fields=["entity", "assignee", "due_at", "id"],
                condition=models.Q(type=ActivityType.TASK, status=ActivityStatus.OPEN),
                name="activity_open_task_asg_idx",
            ),
            # "Replied 2 h ago" on the board and the lead page: a lead's newest received email.
            models.Index(
                fields=["lead", "-occurred_at"],
                include=["entity"],
                condition=models.Q(direction=ActivityDirection.INBOUND),
                name="activity_lead_inbound_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type}: {self.subject}"
