"""Marketing lists and their members."""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from axiomatic.tenancy import TenantModel


class MemberStatus(models.TextChoices):
    SUBSCRIBED = "subscribed", "Subscribed"
    UNSUBSCRIBED = "unsubscribed", "Unsubscribed"


class MemberSource(models.TextChoices):
    PROSPECTING = "prospecting", "Prospecting"
    API = "api", "API"
    ADMIN = "admin", "Admin"


class MarketingList(TenantModel):
    """A named audience that marketing sends to, filled from the CRM by prospecting.

    The name is unique per entity case-insensitively (as stage names are), because two lists
    called "Newsletter" and "newsletter" would be told apart by nobody.
    """

    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(Lower("name"), "entity", name="marketinglist_entity_name_ci_uniq"),
        ]

    def __str__(self) -> str:
        return self.name


class MarketingListMember(TenantModel):
    """One contact's place on a list, with the address it was added with.

    The email is a snapshot: editing the contact later does not change where this list sends.
    The contact link is SET_NULL rather than CASCADE so that deleting a contact in the CRM never
    silently erases an opt-out (an unsubscribed row must outlive the contact, or the address could
    be re-added later) nor a subscriber the list still mails. Unsubscribing keeps the row, which is
    what keeps the contact from being added again.
    """

    marketing_list = models.ForeignKey(MarketingList, on_delete=models.CASCADE, related_name="members")
    contact = models.ForeignKey(
        "crm.Contact", null=True, blank=True, on_delete=models.SET_NULL, related_name="marketing_memberships"
    )
    email = models.EmailField(max_length=254)
    status = models.CharField(max_length=12, choices=MemberStatus.choices, default=MemberStatus.SUBSCRIBED)
    source = models.CharField(max_length=12, choices=MemberSource.choices, default=MemberSource.API)
    added_at = models.DateTimeField(default=timezone.now)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-added_at", "id"]
        constraints = [
            # NULL contacts (deleted in the CRM) are distinct in PostgreSQL, so orphans never collide.
            models.UniqueConstraint(fields=["marketing_list", "contact"], name="marketingmember_list_contact_uniq"),
        ]
        indexes = [
            models.Index(fields=["marketing_list", "-added_at", "id"], name="marketingmember_list_added_idx"),
            models.Index(fields=["marketing_list", "email"], name="marketingmember_list_email_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.email} on {self.marketing_list_id} ({self.status})"
