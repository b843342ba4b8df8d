"""Forms of the sales pages: companies, contacts, rescheduling a task.

The forms only shape input; the rules live in the services (`crm.services.companies`,
`crm.services.contacts`, `crm.services.activities`), whose refusals a view shows on the form with
`axiomatic.forms.add_domain_error`, so a duplicate domain or a nameless contact reads exactly as
the API says it. A company's domain and country go through the service's own normalisers (as the
API's serializer and the admin do); the member and company pickers use the API's sentences.
"""

from __future__ import annotations

from django import forms
from django.utils import timezone

from axiomatic.errors import field_rule
from axiomatic.models import Entity, User
from crm.choices import CompanyRole, CompanyStatus
from crm.custom_field_forms import CustomFieldsFormMixin
from crm.models import Company
from crm.services.companies import company_country_normalise, company_domain_normalise
from crm.services.contacts import contact_email_normalise

# The API's (Django REST framework's) wording of the checks both make, so a form says what the API says.
API_MESSAGES = {
    "required": "This field is required.",
    "max_length": "Ensure this field has no more than %(limit_value)d characters.",
}


class ApiCharField(forms.CharField):
    """A text field whose messages are the API's: a blank required value, a value too long."""

    def __init__(self, *, blank_message: str = "This field may not be blank.", **kwargs):
        kwargs.setdefault("required", False)
        messages = {**API_MESSAGES, **kwargs.pop("error_messages", {})}
        if kwargs["required"]:
            messages["required"] = blank_message  # a form always sends the field: empty is "blank"
        super().__init__(error_messages=messages, **kwargs)


class ApiEmailField(forms.EmailField):
    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        super().__init__(error_messages={**API_MESSAGES, "invalid": "Enter a valid email address."}, **kwargs)


class MemberField(forms.ModelChoiceField):
    """A member of the entity (owner); anyone else reads as the API's `ownerUserId` error."""

    def __init__(self, entity: Entity, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("empty_label", "Unassigned")
        super().__init__(
            queryset=User.objects.filter(memberships__entity=entity).order_by("name", "email", "id"),
            error_messages={"invalid_choice": "User %(value)s is not a member of this entity."},
            **kwargs,
        )

    def label_from_instance(self, obj: User) -> str:
        return obj.display_name


class EntityCompanyField(forms.ModelChoiceField):
    """A company of the entity, by id. Never rendered as a list of every company (there may be a
    million): the template shows the chosen one and a search that finds others."""

    def __init__(self, entity: Entity, **kwargs):
        kwargs.setdefault("required", False)
        super().__init__(
            queryset=Company.objects.for_entity(entity),
            error_messages={"invalid_choice": "No company with id %(value)s exists in this entity."},
            **kwargs,
        )


class CompanyForm(CustomFieldsFormMixin, forms.Form):
    custom_object_type = "company"

    name = ApiCharField(max_length=200, required=True)
    role = forms.ChoiceField(choices=CompanyRole.choices, initial=CompanyRole.PROSPECT)
    status = forms.ChoiceField(choices=CompanyStatus.choices, initial=CompanyStatus.ACTIVE)
    domain = ApiCharField(max_length=253, help_text="Unique in the entity, e.g. example.com.")
    website = ApiCharField(max_length=500)
    phone = ApiCharField(max_length=50)
    email = ApiEmailField(max_length=254)
    industry = ApiCharField(max_length=100)
    address_line1 = ApiCharField(max_length=200, label="Address line 1")
    address_line2 = ApiCharField(max_length=200, label="Address line 2")
    city = ApiCharField(max_length=100)
    region = ApiCharField(max_length=100)
    postal_code = ApiCharField(max_length=20)
    country = ApiCharField(max_length=2, help_text="Two letters, e.g. DE.")
    notes = ApiCharField(widget=forms.Textarea(attrs={"rows": 4}))

    def __init__(self, *args, entity: Entity, **kwargs):
        super().__init__(*args, **kwargs)
        self.entity = entity
        self.fields["owner"] = MemberField(entity)
        self.order_fields(["name", "role", "status", "owner"])
        self.add_custom_fields()

    def clean_domain(self) -> str | None:
        return field_rule(company_domain_normalise, self.cleaned_data["domain"])

    def clean_country(self) -> str:
        return field_rule(company_country_normalise, self.cleaned_data["country"])

    @classmethod
    def initial_of(cls, company: Company) -> dict:
        initial = {name: getattr(company, name) for name in cls.base_fields}
        initial["domain"] = company.domain or ""
        initial["owner"] = company.owner_id
        return {**initial, **cls.custom_initial(company)}

    def service_fields(self, *, changed_only: bool) -> dict:
        """Keyword arguments for `company_create` / `company_update` (only what changed on edit)."""
        names = self.changed_data if changed_only else list(self.fields)
        fields = {name: self.cleaned_data[name] for name in names if name in self.cleaned_data}
        return self.service_fields_with_custom(fields, changed_only=changed_only)


class ContactForm(CustomFieldsFormMixin, forms.Form):
    custom_object_type = "contact"

    first_name = ApiCharField(max_length=100)
    last_name = ApiCharField(max_length=100)
    email = ApiEmailField(max_length=254, help_text="Unique in the entity; stored lower-cased.")
    phone = ApiCharField(max_length=50)
    title = ApiCharField(max_length=200, label="Job title")
    linkedin_url = ApiCharField(max_length=500, label="LinkedIn URL")
    notes = ApiCharField(widget=forms.Textarea(attrs={"rows": 4}))

    def __init__(self, *args, entity: Entity, **kwargs):
        super().__init__(*args, **kwargs)
        self.entity = entity
        self.fields["company"] = EntityCompanyField(
            entity, label="Primary company", help_text="Choosing another keeps the old one as a membership."
        )
        self.fields["owner"] = MemberField(entity)
        self.order_fields(["first_name", "last_name", "email", "phone", "title", "company", "owner"])
        self.add_custom_fields()

    def clean_email(self) -> str | None:
        return contact_email_normalise(self.cleaned_data["email"])

    @classmethod
    def initial_of(cls, contact, *, company: Company | None) -> dict:
        initial = {name: getattr(contact, name) for name in cls.base_fields}
        initial["email"] = contact.email or ""
        initial["owner"] = contact.owner_id
        initial["company"] = company.pk if company else None
        return {**initial, **cls.custom_initial(contact)}

    def chosen_company(self) -> Company | None:
        """The company to show in the picker: the valid choice, else the initial one."""
        if self.is_bound and hasattr(self, "cleaned_data") and self.cleaned_data.get("company"):
            return self.cleaned_data["company"]
        return getattr(self, "initial_company", None)

    def service_fields(self, *, changed_only: bool) -> dict:
        names = self.changed_data if changed_only else list(self.fields)
        fields = {name: self.cleaned_data[name] for name in names if name in self.cleaned_data}
        return self.service_fields_with_custom(fields, changed_only=changed_only)


class TaskRescheduleForm(forms.Form):
    """A new due date and time, read in the entity's time zone (the `datetime-local` input)."""

    due = forms.DateTimeField(
        label="New due date",
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"],
        error_messages={"required": "Choose a new due date and time."},
    )

    def __init__(self, *args, entity: Entity, **kwargs):
        super().__init__(*args, **kwargs)
        self.entity = entity

    def full_clean(self):
        with timezone.override(self.entity.tzinfo):  # the typed wall-clock time is the entity's
            super().full_clean()


class LeadCustomFieldsForm(CustomFieldsFormMixin, forms.Form):
    """A lead's custom fields on their own form: the lead page edits its other fields through the
    board's JavaScript and the API, and custom fields, with an input per type, through this one."""

    custom_object_type = "lead"

    def __init__(self, *args, entity: Entity, **kwargs):
        super().__init__(*args, **kwargs)
        self.entity = entity
        self.add_custom_fields()

    def service_fields(self) -> dict:
        """Keyword arguments for `lead_update`: the custom fields that changed, if any."""
        return self.service_fields_with_custom({}, changed_only=True)
