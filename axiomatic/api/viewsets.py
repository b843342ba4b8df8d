"""The base viewset: the one place where API requests are authenticated, scoped and wrapped.

Subclasses declare `queryset` (any tenant model), `serializer_class`, `filterset_class`,
`item_key`/`list_key` and `ordering`; `scope_family` defaults to the one the app registered for
the route's prefix (`axiomatic.mounts`). They narrow rows through
`narrow_queryset()`; they cannot override `get_queryset()`, the authentication or the permission
classes (refused when the class is defined), so no view can forget the entity.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db import models
from rest_framework import exceptions, status, viewsets
from rest_framework.response import Response

from axiomatic.api.pagination import EntityPagination
from axiomatic.api.permissions import HasEntity, HasRole, HasScope, IsAuthenticated
from axiomatic.api.throttling import ApiKeyRateThrottle
from axiomatic.mounts import scope_family_of
from axiomatic.replica import replica_configured, replica_reads_for_api

_SEALED = ("get_queryset", "get_object", "authentication_classes", "permission_classes")


@dataclass(frozen=True)
class ParentResource:
    """The parent row of a nested route, e.g. the contact of `/contacts/{contactId}/...`.

    `model` is a tenant model, `url_kwarg` the path parameter naming it. The base viewset looks
    it up inside the request's entity (404 otherwise, the same for another entity's id) before
    the view runs and hands it over as `view.parent`. With `field` (the child's foreign key to the
    parent) the children are narrowed to the parent's and each child's `field` is set to it.
    """

    model: type[models.Model]
    url_kwarg: str
    field: str | None = None

    def not_found(self) -> exceptions.NotFound:
        return exceptions.NotFound()  # "Not found.", as for every other path id


class _RegisteredScopeFamily:
    """`view.scope_family` unless a view sets its own: the family its app registered for the
    request's path (`axiomatic.mounts.register_api`)."""

    def __get__(self, view, owner=None):
        if view is None:
            return self
        return scope_family_of(view.request.path)


class EntityScopedViewSet(viewsets.GenericViewSet):
    # Authentication classes come from REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"] (API keys,
    # then sessions), so the core names no app; subclasses may not replace them.
    permission_classes = [IsAuthenticated, HasEntity, HasScope, HasRole]
    throttle_classes = [ApiKeyRateThrottle]
    pagination_class = EntityPagination
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    lookup_value_converter = "uuid"

    scope_family: str = _RegisteredScopeFamily()  # type: ignore[assignment]
    parent_resource: ParentResource | None = None
    # The role each action needs beyond `member` (e.g. {"create": "admin"}); read on every request.
    action_roles: dict[str, str] = {}
    # The maintained counter (axiomatic.counters) that is this list's exact unfiltered total.
    total_counter: str | None = None
    # Query parameters that are text searches (trigram-indexed): their matches may be sorted
    # rather than found by walking the ordering index (axiomatic.ordering).
    search_params: tuple[str, ...] = ()
    parent = None  # the resolved parent row, for nested routes
    item_key = "item"
    list_key = "items"
    ordering: tuple[str, ...] = ("id",)
    # Actions that only read: with a streaming replica they read there, authentication included
    # (axiomatic.replica). A GET action that writes must not be listed.
    replica_actions: tuple[str, ...] = ("list", "retrieve")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in _SEALED:
            if name in cls.__dict__:
                raise TypeError(
                    f"{cls.__name__} overrides {name}; narrow rows with narrow_queryset() instead "
                    "so entity scoping and scope checks stay in EntityScopedViewSet."
                )
        # Path parameters are named as in the seed: /leads/{leadId}, /pipeline-stages/{stageId}, ...
        if "lookup_url_kwarg" not in cls.__dict__ and "item_key" in cls.__dict__:
            cls.lookup_url_kwarg = f"{cls.item_key}Id"

    def dispatch(self, request, *args, **kwargs):
        # Decided before DRF authenticates, so that the key lookup reads where the page does.
        action = getattr(self, "action_map", {}).get(request.method.lower())
        if action in self.replica_actions and replica_configured():
            with replica_reads_for_api(request):
                return super().dispatch(request, *args, **kwargs)
        return super().dispatch(request, *args, **kwargs)

    def initial(self, request, *args, **kwargs):
        # A method the route does not have is a 405 whoever asks and whatever the entity (DRF would
        # authenticate and resolve the entity first, answering 401 or 400 instead).
        if request.method.lower() not in self.http_method_names or not hasattr(self, request.method.lower()):
            raise exceptions.MethodNotAllowed(request.method)
        # PostgreSQL text cannot hold NUL: refuse it here rather than fail in the database.
        for key, values in request.query_params.lists():
            if "\x00" in key or any("\x00" in value for value in values):
                raise exceptions.ParseError("Query parameters must not contain NUL characters.")
        super().initial(request, *args, **kwargs)
        # After authentication, entity and scope checks; before the body is read.
        if self.parent_resource is not None:
            self.parent = self._resolve_parent(self.parent_resource)

    def _resolve_parent(self, declared: ParentResource):
        try:
            pk = uuid.UUID(str(self.kwargs.get(declared.url_kwarg)))
        except ValueError:
            raise declared.not_found() from None
        parent = declared.model.objects.for_entity(self.request.entity).filter(pk=pk).first()
        if parent is None:
            raise declared.not_found()
        return parent

    def get_queryset(self):
        model = self.queryset.model
        queryset = model.objects.for_entity(self.request.entity)
        if self.parent_resource is not None and self.parent_resource.field:
            queryset = queryset.filter(**{self.parent_resource.field: self.parent})
        queryset = self.narrow_queryset(queryset)
        return queryset.order_by(*self.ordering) if self.ordering else queryset

    def get_object(self):
        """The row named in the path, inside the entity (and the parent): 404 otherwise."""
        instance = super().get_object()
        if self.parent_resource is not None and self.parent_resource.field:
            setattr(instance, self.parent_resource.field, self.parent)  # already loaded; no query
        return instance

    def narrow_queryset(self, queryset):
        """Hook for subclasses: joins, annotations, parent-resource filters."""
        return queryset

    def get_serializer_context(self):
        context = super().get_serializer_context()
        context["entity"] = getattr(self.request, "entity", None)
        return context

    # Responses are wrapped in the item key: {"company": {...}}.
    def wrap(self, instance, *, status_code: int = status.HTTP_200_OK, headers=None) -> Response:
        data = self.get_serializer(instance).data
        return Response({self.item_key: data}, status=status_code, headers=headers)


class ListMixin:
    def list(self, request, *args, **kwargs):
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        serializer = self.get_serializer(page, many=True)
        return self.get_paginated_response(serializer.data)


class RetrieveMixin:
    def retrieve(self, request, *args, **kwargs):
        return self.wrap(self.get_object())


class CreateMixin:
    """Validates with the serializer, then hands the data to `perform_create` (a service call)."""

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        instance = self.perform_create(serializer)
        return self.wrap(instance, status_code=status.HTTP_201_CREATED)

    def perform_create(self, serializer):
        return serializer.save(entity=self.request.entity)


class PartialUpdateMixin:
    def partial_update(self, request, *args, **kwargs):
        instance = self.get_object()
        serializer = self.get_serializer(instance, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        instance = self.perform_update(serializer)
        return self.wrap(instance)

    def perform_update(self, serializer):
        return serializer.save()


class DestroyOkMixin:
    """DELETE answering 200 `{"ok": true}` (most routes of the contract)."""

    def destroy(self, request, *args, **kwargs):
        self.perform_destroy(self.get_object())
        return Response({"ok": True})

    def perform_destroy(self, instance):
        instance.delete()


__all__ = [
    "CreateMixin",
    "ParentResource",
    "DestroyOkMixin",
    "EntityScopedViewSet",
    "ListMixin",
    "PartialUpdateMixin",
    "RetrieveMixin",
]
