"""Core models: users, entities (tenants) and who belongs to which entity."""

from __future__ import annotations

import uuid
import zoneinfo

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from axiomatic.currencies import validate_currency_code


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not an IANA time zone name.")


class UserManager(BaseUserManager):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra):
        if not email:
            raise ValueError("Users need an email address")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra):
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self.create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A person who signs in with an email address.

    UUID keys from the first migration so ids can be handed to API clients without revealing
    counts, and so the custom model never needs a painful mid-life swap.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField(unique=True)
    name = models.CharField(max_length=200, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email

    @property
    def display_name(self) -> str:
        return self.name or self.email


class Entity(models.Model):
    """A tenant organisation. Every CRM row belongs to exactly one entity.

    The default currency and time zone live here because "this month", "today" and a lead's
    currency are all questions about the organisation, not the user asking.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    default_currency = models.CharField(max_length=3, default="USD", validators=[validate_currency_code])
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone])
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "entities"
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

    @property
    def tzinfo(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)


class Membership(models.Model):
    """A user's place in an entity; owners and assignees must be members of the entity."""

    class Role(models.TextChoices):
        MEMBER = "member", "Member"
        ADMIN = "admin", "Admin"
        OWNER = "owner", "Owner"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    entity = models.ForeignKey(Entity, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "entity"], name="membership_user_entity_uniq")]
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.user} in {self.entity} ({self.role})"


class EntityCounter(models.Model):
    """A maintained count of one kind of row in one entity (e.g. `company`, `company.role.vendor`).

    Lists answer an exact `total` without counting a million rows: PostgreSQL statement triggers on
    each counted table (see the apps' migrations, built with `axiomatic.counters`) add and subtract
    in the same transaction as the insert, update or delete, so a total is as exact as the rows a
    transaction can see. SQLite (the demo) has no such triggers; counts there are plain COUNT(*).
    """

    id = models.BigAutoField(primary_key=True)
    # No database constraint: while an entity is deleted, the triggers of its cascading deletes may
    # still write its counters; `axiomatic.signals` removes them once the entity is gone.
    entity = models.ForeignKey(Entity, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    name = models.CharField(max_length=100)
    value = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["entity", "name"], name="entity_counter_uniq")]

    def __str__(self) -> str:
        return f"{self.name}={self.value} in {self.entity_id}"


# The change feed's table lives in its own module (axiomatic/models_changes.py).
from axiomatic.models_changes import Change  # noqa: E402, F401
