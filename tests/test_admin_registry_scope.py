"""Every admin of a tenant model is scoped for staff who are not superusers, with no way to forget.

The registry walk fails for any registered model that reaches an entity (directly or through a
parent) whose admin, or one of its inlines, is not scoped. Then, for every such admin, a staff
user who administers entity A (and is a mere member of B) is shown A's rows and never B's: not in
the change list, the change, delete and history views, the delete action, the add form's relation
choices, autocomplete or the change-list filters. A model added to the admin without a row in
`_rows` below fails `test_every_registered_tenant_model_is_exercised`.
"""

from __future__ import annotations

import json
import uuid

import pytest
from django.contrib import admin
from django.contrib.admin.filters import RelatedFieldListFilter
from django.db import transaction
from django.forms import ModelChoiceField
from django.http import JsonResponse
from django.test import RequestFactory
from django.utils import timezone

from axiomatic.admin import StaffScopeMixin, entity_lookup
from axiomatic.models import Entity, User
from crm.models import (
    CompanyDuplicate,
    ContactDuplicate,
    DuplicateDismissal,
    Import,
    ImportFileSlice,
    ImportRowError,
    Lead,
    MergedRecord,
    OutboundEmail,
    OutboundEmailConnection,
)
from crm.services.actors import Actor
from crm.services.custom_fields import custom_field_create
from crm.services.leads import lead_save_new
from tests import factories
from tests.rls_support import app_context
from webhooks.models import WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db


def _reaches_entity(model, depth: int = 0) -> bool:
    """Whether rows of `model` belong to an entity, directly or through a parent row."""
    if entity_lookup(model) is not None:
        return True
    if depth >= 2:
        return False
    return any(
        field.many_to_one and field.related_model is not model and _reaches_entity(field.related_model, depth + 1)
        for field in model._meta.get_fields()
        if field.concrete
    )


TENANT_ADMINS = sorted(
    ((model, model_admin) for model, model_admin in admin.site._registry.items() if _reaches_entity(model)),
    key=lambda pair: pair[0]._meta.label,
)


def _label(pair) -> str:
    return pair[0]._meta.label


def test_every_admin_of_a_tenant_model_is_scoped():
    unscoped = [
        label
        for label in map(_label, TENANT_ADMINS)
        if not isinstance(admin.site._registry[_model(label)], StaffScopeMixin)
    ]
    assert not unscoped, f"admins not derived from StaffScopeMixin: {unscoped}"
    inlines = [
        f"{_label(pair)}: {inline.__name__}"
        for pair in TENANT_ADMINS
        for inline in pair[1].inlines
        if _reaches_entity(inline.model) and not issubclass(inline, StaffScopeMixin)
    ]
    assert not inlines, f"inlines not derived from StaffScopeMixin: {inlines}"


def _model(label: str):
    return next(model for model in admin.site._registry if model._meta.label == label)


# --- a staff user who administers A, and rows of every registered model in A and in B -------------


def _populate(entity: Entity, owner: User, tag: str) -> None:
    """One row of every registered tenant model in `entity` (figures, counters, timeline and
    changes follow from the lead's service)."""
    company = factories.make_company(entity, name=f"{tag} Company")
    contact = factories.make_contact(entity, first_name=tag, last_name="Contact", email=f"{tag.lower()}@example.com")
    factories.make_membership(contact, company)
    lead_save_new(
        lead=Lead(entity=entity, title=f"{tag} Deal", stage=factories.stage(entity, "new"), currency="USD"),
        actor=Actor.system(),
    )
    factories.make_activity(entity, subject=f"{tag} call")
    connection = OutboundEmailConnection.objects.create(
        entity=entity, channel="gmail", email_address=f"{tag.lower()}-box@example.com", connected_by=owner
    )
    OutboundEmail.objects.create(
        entity=entity,
        channel="gmail",
        from_address=connection.email_address,
        subject=f"{tag} mail",
        connection=connection,
    )
    marketing_list = factories.make_list(entity, f"{tag} List")
    factories.make_list_member(marketing_list, contact)
    endpoint = WebhookEndpoint.objects.create(
        entity=entity, url=f"https://{tag.lower()}.example.com/hook", secret_encrypted="x"
    )
    WebhookDelivery.objects.create(
        entity=entity,
        endpoint=endpoint,
        event_id=f"evt_{tag}",
        event_type="company.created",
        attempted_at=timezone.now(),
    )
    factories.make_key(entity, owner, name=f"{tag} key")
    twin = factories.make_contact(entity, first_name=tag, last_name="Contact")
    ContactDuplicate.objects.create(entity=entity, first=contact, second=twin, reasons=["same_phone"], score=0.6)
    other = factories.make_company(entity, name=f"{tag} Company Inc")
    CompanyDuplicate.objects.create(entity=entity, first=company, second=other, reasons=["same_name"], score=0.85)
    DuplicateDismissal.objects.create(entity=entity, kind="contact", first_id=contact.pk, second_id=twin.pk)
    MergedRecord.objects.create(entity=entity, kind="company", merged_id=uuid.uuid4(), survivor_id=company.pk)
    job = Import.objects.create(entity=entity, object_type="company", file_name=f"{tag}.csv", created_by=owner)
    ImportFileSlice.objects.create(entity=entity, job=job, number=0, data=b"name\nA\n")
    ImportRowError.objects.create(entity=entity, job=job, row=1, column="name", message=f"{tag} bad", cells=["A"])
    custom_field_create(entity=entity, object_type="company", key="tier", label=f"{tag} tier", type="text")


@pytest.fixture
def world(scoped_staff, entity, other_entity, user, other_user):
    _populate(entity, user, "Ours")
    _populate(other_entity, other_user, "Theirs")
    return {"ours": entity, "theirs": other_entity}


def _rows(model, entity: Entity, other_user: User, user: User):
    """(one row of `entity`) for a model: the entity itself, a user only there, or a tenant row."""
    if model is Entity:
        return model.objects.filter(pk=entity.pk)
    if model is User:
        return model.objects.filter(pk=user.pk)
    path = entity_lookup(model) or next(
        f"{field.name}__entity"
        for field in model._meta.get_fields()
        if field.concrete and field.many_to_one and entity_lookup(field.related_model) == "entity"
    )
    return model._default_manager.filter(**{path: entity})


def _ours_and_theirs(model, world, user, other_user):
    ours = _rows(model, world["ours"], other_user, user).first()
    theirs = _rows(model, world["theirs"], other_user, other_user).first()
    return ours, theirs


def test_every_registered_tenant_model_is_exercised(world, user, other_user):
    missing = [_label(pair) for pair in TENANT_ADMINS if None in _ours_and_theirs(pair[0], world, user, other_user)]
    assert not missing, f"add a row of these models to _populate: {missing}"


def _url(model, suffix: str = "") -> str:
    return f"/admin/{model._meta.app_label}/{model._meta.model_name}/{suffix}"


def _foreign_ids(world, other_user) -> set[str]:
    """Every row id of entity B (and B's own user), across the registered models."""
    ids = {str(world["theirs"].pk), str(other_user.pk)}
    for model, _ in TENANT_ADMINS:
        if model in (Entity, User):
            continue
        ids |= {str(pk) for pk in _rows(model, world["theirs"], other_user, other_user).values_list("pk", flat=True)}
    return ids


@pytest.mark.parametrize("pair", TENANT_ADMINS, ids=_label)
def test_a_staff_user_sees_and_reaches_only_their_entities_rows(
    pair, world, scoped_staff, scoped_staff_client, user, other_user
):
    model, model_admin = pair
    ours, theirs = _ours_and_theirs(model, world, user, other_user)
    foreign = _foreign_ids(world, other_user)

    listing = scoped_staff_client.get(_url(model))
    assert listing.status_code == 200
    listed = {str(row.pk) for row in listing.context["cl"].result_list}
    assert str(ours.pk) in listed and str(theirs.pk) not in listed

    # Filters over relations offer only the staff user's rows (an entity filter: only A).
    for spec in listing.context["cl"].filter_specs:
        if isinstance(spec, RelatedFieldListFilter):
            offered = {str(value) for value, _ in spec.lookup_choices}
            assert not offered & foreign, f"{spec.field_path} offers another entity's rows"

    # B's row cannot be opened, deleted or looked into: the admin's "does not exist" redirect.
    for suffix in ("change/", "delete/", "history/"):
        response = scoped_staff_client.get(_url(model, f"{theirs.pk}/{suffix}"))
        assert response.status_code in (302, 403), (suffix, response.status_code)  # 403: no delete at all
    assert scoped_staff_client.get(_url(model, f"{ours.pk}/change/")).status_code == 200

    # The delete action never reaches B's row, whatever is posted.
    scoped_staff_client.post(
        _url(model), {"action": "delete_selected", "_selected_action": [str(theirs.pk)], "post": "yes"}
    )
    assert model._default_manager.filter(pk=theirs.pk).exists()

    # The add form offers only A's related rows.
    request = RequestFactory().get(_url(model, "add/"))
    request.user = scoped_staff
    if model_admin.has_add_permission(request):
        form = scoped_staff_client.get(_url(model, "add/")).context["adminform"].form
        for name, field in form.fields.items():
            if isinstance(field, ModelChoiceField):
                offered = {str(pk) for pk in field.queryset.values_list("pk", flat=True)}
                assert not offered & foreign, f"add form's {name} offers another entity's rows"

    # Autocomplete from this admin's relation fields lists only A's rows.
    for field_name in model_admin.autocomplete_fields:
        response = scoped_staff_client.get(
            "/admin/autocomplete/",
            {"app_label": model._meta.app_label, "model_name": model._meta.model_name, "field_name": field_name},
        )
        assert response.status_code == 200, field_name
        offered = {row["id"] for row in response.json()["results"]}
        assert offered and not offered & foreign, field_name


# --- the database refuses a forgotten scope ------------------------------------------------------


def _count_every_company(request):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM crm_company")
        return JsonResponse({"companies": cursor.fetchone()[0]})


@pytest.mark.parametrize("superuser", [False, True])
def test_an_admin_view_of_a_staff_user_reads_only_their_entities_even_in_raw_sql(superuser, world, scoped_staff):
    staff = scoped_staff
    staff.is_superuser = superuser
    staff.save(update_fields=["is_superuser"])
    request = RequestFactory().get("/admin/raw/")
    request.user = staff
    view = admin.site.admin_view(_count_every_company)
    with app_context(), transaction.atomic():
        response = view(request)
    assert json.loads(response.content)["companies"] == (4 if superuser else 2)  # _populate: 2 per entity


def test_the_application_role_cannot_truncate_a_tenant_table(world):
    from django.db import connection
    from django.db.utils import ProgrammingError

    with (
        app_context(),
        pytest.raises(ProgrammingError, match="permission denied"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("TRUNCATE crm_company CASCADE")
