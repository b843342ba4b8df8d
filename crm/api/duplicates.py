"""Duplicates and merge: `/contacts/duplicates`, `/companies/duplicates` (list, dismiss), and the
schema of `/contacts/{contactId}/merge`, `/companies/{companyId}/merge` (the action itself is on the
contact and company views, from `crm.api.merged`).

Thin views: the pairs are kept by `crm.services.duplicates` (so a list is one indexed page), the
merge is `crm.services.merge`. `crm.api.merged.MergedRecordsMixin` makes the contact and company views answer a
merged id with 404 and `mergedInto`.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.response import Response

from axiomatic.api.schema import ErrorSerializer
from axiomatic.api.serializers import ApiSerializer, StrictUUIDField
from axiomatic.api.viewsets import EntityScopedViewSet, ListMixin
from crm.api.companies import CompanySerializer, CompanyViewSet
from crm.api.contacts import ContactSerializer, ContactViewSet
from crm.api.merged import MERGE_SERIALIZERS
from crm.models import CompanyDuplicate, ContactDuplicate
from crm.models.duplicates import DuplicateKind
from crm.services.duplicates import COMPANY_WEIGHTS, CONTACT_WEIGHTS, duplicates_dismiss
from crm.services.merge import MOVED_KEYS

# --- duplicates -------------------------------------------------------------------------------------


def _reasons_help(weights: dict) -> str:
    return "Why the two look alike, strongest first: " + ", ".join(f"`{name}`" for name in weights) + "."


class ContactDuplicateSerializer(ApiSerializer):
    """Two contacts that may be one person."""

    ids = serializers.ListField(child=serializers.UUIDField(), min_length=2, max_length=2, read_only=True)
    reasons = serializers.ListField(
        child=serializers.ChoiceField(choices=list(CONTACT_WEIGHTS)),
        read_only=True,
        help_text=_reasons_help(CONTACT_WEIGHTS),
    )
    score = serializers.FloatField(read_only=True, min_value=0, max_value=1, help_text="0..1; higher is surer.")


class CompanyDuplicateSerializer(ApiSerializer):
    """Two companies that may be one organisation."""

    ids = serializers.ListField(child=serializers.UUIDField(), min_length=2, max_length=2, read_only=True)
    reasons = serializers.ListField(
        child=serializers.ChoiceField(choices=list(COMPANY_WEIGHTS)),
        read_only=True,
        help_text=_reasons_help(COMPANY_WEIGHTS),
    )
    score = serializers.FloatField(read_only=True, min_value=0, max_value=1, help_text="0..1; higher is surer.")


class DismissSerializer(ApiSerializer):
    """The pair that is not a duplicate."""

    ids = serializers.ListField(
        child=StrictUUIDField(),
        min_length=2,
        max_length=2,
        help_text="The two ids of the pair (either order). Unknown or another entity's ids → 400.",
    )


OkSerializer = inline_serializer(name="DismissOk", fields={"ok": serializers.BooleanField()})


class _DuplicateViewSet(ListMixin, EntityScopedViewSet):
    list_key = "duplicates"
    item_key = "duplicate"
    ordering = ("-score", "id")
    kind = ""

    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    def _dismiss(self, request):
        body = DismissSerializer(data=request.data, context=self.get_serializer_context())
        body.is_valid(raise_exception=True)
        duplicates_dismiss(entity=request.entity, kind=self.kind, ids=body.validated_data["ids"])
        return Response({"ok": True})


_LIST_DESCRIPTION = (
    "Pairs that look like duplicates, strongest first (score, then id), paginated like every list. "
    "The pairs are kept up to date on every write, so this is one indexed page. A dismissed pair is never "
    "offered again."
)
_DISMISS_DESCRIPTION = 'The pair is not a duplicate: it is removed and never offered again. Answers `{"ok": true}`.'


@extend_schema_view(list=extend_schema(summary="List duplicate contacts", description=_LIST_DESCRIPTION))
class ContactDuplicateViewSet(_DuplicateViewSet):
    queryset = ContactDuplicate.objects.all()
    serializer_class = ContactDuplicateSerializer
    operation_noun = "ContactDuplicate"
    total_counter = "contact_duplicate"
    kind = DuplicateKind.CONTACT

    @extend_schema(
        summary="Dismiss a duplicate contact pair",
        description=_DISMISS_DESCRIPTION,
        request=DismissSerializer,
        responses={200: OkSerializer, 400: ErrorSerializer},
    )
    @action(detail=False, methods=["post"], url_path="dismiss", filter_backends=[], pagination_class=None)
    def dismiss(self, request, *args, **kwargs):
        return self._dismiss(request)


@extend_schema_view(list=extend_schema(summary="List duplicate companies", description=_LIST_DESCRIPTION))
class CompanyDuplicateViewSet(_DuplicateViewSet):
    queryset = CompanyDuplicate.objects.all()
    serializer_class = CompanyDuplicateSerializer
    operation_noun = "CompanyDuplicate"
    total_counter = "company_duplicate"
    kind = DuplicateKind.COMPANY

    @extend_schema(
        summary="Dismiss a duplicate company pair",
        description=_DISMISS_DESCRIPTION,
        request=DismissSerializer,
        responses={200: OkSerializer, 400: ErrorSerializer},
    )
    @action(detail=False, methods=["post"], url_path="dismiss", filter_backends=[], pagination_class=None)
    def dismiss(self, request, *args, **kwargs):
        return self._dismiss(request)


# --- merge (the action lives on the contact and company views: crm.api.merged) -----------------------

MOVED = inline_serializer(
    name="MergeMoved",
    fields={key: serializers.IntegerField(min_value=0) for key in MOVED_KEYS.values()},
)
_MERGE_DESCRIPTION = (
    "Merges `mergeId` into the {name} in the path, which survives, in one transaction: every row that pointed at "
    "`mergeId` points at the survivor ({folds}); empty fields of the survivor take the merged record's values, and "
    "fields named in `fieldsFrom` take them regardless. `mergeId` is then gone: its GET answers 404 with "
    "`mergedInto`, and it leaves every list. The change feed records the survivor's `updated`, the moved rows' "
    "`updated` and the merged record's `deleted` with `data.mergedInto`. `dryRun: true` answers the counts and "
    "the resulting record and writes nothing. The path's own id as `mergeId` → 400; an unknown or another "
    "entity's id → 404; of two merges racing over the same records, the one that finds its record gone → 404."
)


def _merge_schema(name: str, serializer_class, folds: str, request):
    answer = inline_serializer(
        name=f"{name.capitalize()}MergeResult",
        fields={name: serializer_class(), "moved": MOVED, "dryRun": serializers.BooleanField()},
    )
    return extend_schema(
        summary=f"Merge another {name} into this one",
        description=_MERGE_DESCRIPTION.format(name=name, folds=folds),
        request=request,
        responses={200: answer, 400: ErrorSerializer, 404: ErrorSerializer},
    )


extend_schema_view(
    merge=_merge_schema(
        "contact",
        ContactSerializer,
        "memberships at the same company fold into one, primary if either was; list members of the same list "
        "fold into one, unsubscribed if either was",
        MERGE_SERIALIZERS[DuplicateKind.CONTACT],
    )
)(ContactViewSet)
extend_schema_view(
    merge=_merge_schema(
        "company",
        CompanySerializer,
        "a contact with memberships at both keeps one, primary if either was",
        MERGE_SERIALIZERS[DuplicateKind.COMPANY],
    )
)(CompanyViewSet)
