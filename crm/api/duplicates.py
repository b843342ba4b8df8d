"""Duplicates and merge: `/contacts/duplicates`, `/companies/duplicates` (list, dismiss) and
`/contacts/{contactId}/merge`, `/companies/{companyId}/merge`.

Thin views: the pairs are kept by `crm.services.duplicates` (so a list is one indexed page), the
merge is `crm.services.merge`. `crm.api.merged.MergedRecordsMixin` makes the contact and company views answer a
merged id with 404 and `mergedInto`.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view, inline_serializer
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from axiomatic.api.schema import ErrorSerializer
from axiomatic.api.serializers import ApiSerializer, StrictUUIDField
from axiomatic.api.viewsets import EntityScopedViewSet, ListMixin, ParentResource
from crm.api.companies import CompanySerializer
from crm.api.contacts import ContactSerializer
from crm.models import Company, CompanyDuplicate, Contact, ContactDuplicate
from crm.models.duplicates import DuplicateKind
from crm.services.actors import Actor
from crm.services.duplicates import COMPANY_WEIGHTS, CONTACT_WEIGHTS, duplicates_dismiss
from crm.services.merge import MOVED_KEYS, company_merge, contact_merge

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


# --- merge ----------------------------------------------------------------------------------------------


class MergeSerializer(ApiSerializer):
    """Which record to merge into the one in the path, and how."""

    merge_id = StrictUUIDField(help_text="The record that is merged and then gone. The path's id → 400; unknown → 404.")
    fields_from = serializers.DictField(
        child=serializers.ChoiceField(choices=["merged", "survivor"]),
        required=False,
        help_text="Fields (API names, or `customFields.<key>`) that take the merged record's value even when the "
        'survivor has one: `{"phone": "merged"}`. Empty fields of the survivor take the merged record\'s values '
        "anyway.",
    )
    dry_run = serializers.BooleanField(
        required=False, default=False, help_text="Answer the counts and the resulting record without writing."
    )


MOVED = inline_serializer(
    name="MergeMoved",
    fields={key: serializers.IntegerField(min_value=0) for key in MOVED_KEYS.values()},
)


def _merge_answer(name: str, serializer_class):
    return inline_serializer(
        name=f"{name.capitalize()}MergeResult",
        fields={
            name: serializer_class(),
            "moved": MOVED,
            "dryRun": serializers.BooleanField(),
        },
    )


class _MergeViewSet(EntityScopedViewSet):
    pagination_class = None
    filter_backends: list = []
    serializer_class = MergeSerializer
    item_key = ""

    def _merge(self, request, service, name: str, representation):
        body = MergeSerializer(data=request.data, context=self.get_serializer_context())
        body.is_valid(raise_exception=True)
        data = body.validated_data
        result = service(
            **{name: self.parent},
            merge_id=data["merge_id"],
            fields_from=data.get("fields_from") or {},
            dry_run=data["dry_run"],
            actor=Actor.from_request(request),
        )
        survivor = representation(result.survivor, context=self.get_serializer_context()).data
        return Response({name: survivor, "moved": result.moved, "dryRun": result.dry_run}, status=status.HTTP_200_OK)


_MERGE_DESCRIPTION = (
    "Merges `mergeId` into the {name} in the path, which survives, in one transaction: every row that pointed at "
    "`mergeId` points at the survivor ({folds}); empty fields of the survivor take the merged record's values, and "
    "fields named in `fieldsFrom` take them regardless. `mergeId` is then gone: its GET answers 404 with "
    "`mergedInto`. The change feed records the survivor's `updated`, the moved rows' `updated` and the merged "
    "record's `deleted` with `data.mergedInto`. `dryRun: true` answers the counts and the resulting record and "
    "writes nothing. The path's own id as `mergeId` → 400; an unknown or another entity's id → 404; a merge "
    "racing another over the same records → 404 for the one that finds its record gone."
)


@extend_schema_view(
    create=extend_schema(
        summary="Merge two contacts",
        description=_MERGE_DESCRIPTION.format(
            name="contact",
            folds="memberships at the same company fold into one, primary if either was; list members of the "
            "same list fold into one, unsubscribed if either was",
        ),
        request=MergeSerializer,
        responses={200: _merge_answer("contact", ContactSerializer), 400: ErrorSerializer, 404: ErrorSerializer},
    )
)
class ContactMergeViewSet(_MergeViewSet):
    queryset = Contact.objects.all()
    parent_resource = ParentResource(Contact, "contactId")
    operation_noun = "ContactMerge"

    def create(self, request, *args, **kwargs):
        return self._merge(request, contact_merge, "contact", ContactSerializer)


@extend_schema_view(
    create=extend_schema(
        summary="Merge two companies",
        description=_MERGE_DESCRIPTION.format(
            name="company",
            folds="a contact with memberships at both keeps one, primary if either was",
        ),
        request=MergeSerializer,
        responses={200: _merge_answer("company", CompanySerializer), 400: ErrorSerializer, 404: ErrorSerializer},
    )
)
class CompanyMergeViewSet(_MergeViewSet):
    queryset = Company.objects.all()
    parent_resource = ParentResource(Company, "companyId")
    operation_noun = "CompanyMerge"

    def create(self, request, *args, **kwargs):
        return self._merge(request, company_merge, "company", CompanySerializer)
