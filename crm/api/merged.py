"""The contact and company views' answer for a merged id: 404 with `mergedInto` (the survivor)."""

from __future__ import annotations

from django.http import Http404
from rest_framework import exceptions

from axiomatic import errors
from crm.services.merge import merged_into


class MergedRecordsMixin:
    """For the contact and company views: a path id that was merged answers 404 with `mergedInto`
    (the survivor's id) instead of a bare 404."""

    merged_kind: str = ""

    def handle_exception(self, exc):
        if isinstance(exc, Http404 | exceptions.NotFound) and self.merged_kind:
            pk = self.kwargs.get(self.lookup_url_kwarg or self.lookup_field)
            entity = getattr(self.request, "entity", None)
            if pk and entity is not None:
                try:
                    survivor = merged_into(entity=entity, kind=self.merged_kind, pk=pk)
                except Exception:  # a malformed id: the plain 404 it was
                    survivor = None
                if survivor is not None:
                    exc = errors.NotFound(f"This {self.merged_kind} was merged into another one.", merged_into=survivor)
        return super().handle_exception(exc)
