"""What the contact and company views gain from duplicates and merge (one mixin in their bases):
`POST /{contacts|companies}/{id}/merge`, and a merged id answering 404 with `mergedInto`.

The request body and the schema are in `crm.api.duplicates`; the merge itself is
`crm.services.merge`.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.http import Http404
from rest_framework import exceptions, serializers
from rest_framework.decorators import action
from rest_framework.response import Response

from axiomatic import errors
from axiomatic.api.openapi import openapi_field
from axiomatic.api.serializers import ApiSerializer, StrictUUIDField
from crm.models import Company, Contact
from crm.models.duplicates import DuplicateKind
from crm.services.actors import Actor
from crm.services.merge import company_merge, contact_merge, mergeable_fields, merged_into

_FIELDS_FROM_HELP = (
    'Fields (API names) and whose value they keep; custom fields as `"customFields": {"<key>": …}` '
    "(or one value for all of them): "
    '`"merged"` takes the merged record\'s value even when the survivor has one (`{"phone": "merged"}`); '
    '`"survivor"` keeps the survivor\'s even when it is empty. A field not named: an empty field of the survivor '
    "takes the merged record's value. An unknown field → 400."
)
SOURCES = ["merged", "survivor"]


def merge_serializer(model) -> type[ApiSerializer]:
    """The body of a merge of `model` records; `fieldsFrom` names that model's fields (the schema
    lists them, so a client knows which it may name)."""
    names = [name for name in mergeable_fields(model) if name != "customFields"]
    properties: dict = {name: {"type": "string", "enum": SOURCES} for name in names}
    if any(field.name == "custom_fields" for field in model._meta.concrete_fields):
        properties["customFields"] = {
            "oneOf": [
                {"type": "string", "enum": SOURCES, "description": "Every custom field."},
                {
                    "type": "object",
                    "additionalProperties": {"type": "string", "enum": SOURCES},
                    "description": "Per custom field key.",
                },
            ]
        }

    class MergeSerializer(ApiSerializer):
        merge_id = StrictUUIDField(
            help_text="The record that is merged and then gone. The path's own id → 400; unknown → 404."
        )
        fields_from = openapi_field(
            serializers.DictField(child=serializers.JSONField(), required=False, help_text=_FIELDS_FROM_HELP),
            request={"type": "object", "properties": properties, "additionalProperties": False},
        )
        dry_run = serializers.BooleanField(
            required=False, default=False, help_text="Answer the counts and the resulting record without writing."
        )

    MergeSerializer.__name__ = f"{model.__name__}MergeSerializer"
    MergeSerializer.__doc__ = f"Which {model._meta.verbose_name} to merge into the one in the path, and how."
    return MergeSerializer


MERGE_SERIALIZERS = {
    DuplicateKind.CONTACT: merge_serializer(Contact),
    DuplicateKind.COMPANY: merge_serializer(Company),
}


_MERGES = {DuplicateKind.CONTACT: contact_merge, DuplicateKind.COMPANY: company_merge}


class MergedRecordsMixin:
    # For ContactViewSet and CompanyViewSet (`merged_kind` names which): the merge action, and the
    # 404 of a merged id naming the survivor (`mergedInto`) instead of a bare 404.

    merged_kind: str = ""

    @action(detail=True, methods=["post"], url_path="merge", filter_backends=[], pagination_class=None)
    def merge(self, request, *args, **kwargs):
        survivor = self.get_object()
        body = MERGE_SERIALIZERS[self.merged_kind](data=request.data, context=self.get_serializer_context())
        body.is_valid(raise_exception=True)
        data = body.validated_data
        result = _MERGES[self.merged_kind](
            **{self.merged_kind: survivor},
            merge_id=data["merge_id"],
            fields_from=data.get("fields_from") or {},
            dry_run=data["dry_run"],
            actor=Actor.from_request(request),
        )
        representation = self.get_serializer(result.survivor).data
        return Response({self.item_key: representation, "moved": result.moved, "dryRun": result.dry_run})

    def handle_exception(self, exc):
        if isinstance(exc, Http404 | exceptions.NotFound) and self.merged_kind:
            pk = self.kwargs.get(self.lookup_url_kwarg or self.lookup_field)
            entity = getattr(self.request, "entity", None)
            if pk and entity is not None:
                try:
                    survivor = merged_into(entity=entity, kind=self.merged_kind, pk=pk)
                except ValidationError:  # a malformed id: the plain 404 it was
                    survivor = None
                if survivor is not None:
                    exc = errors.NotFound(f"This {self.merged_kind} was merged into another one.", merged_into=survivor)
        return super().handle_exception(exc)
