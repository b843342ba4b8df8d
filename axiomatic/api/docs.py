"""The documentation views: `/api/schema` and `/api/docs`.

Kept apart from `axiomatic.api.schema` (the AutoSchema DRF imports from its settings), because
importing DRF views there would be circular.
"""

from __future__ import annotations

from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response


class JsonErrorsMixin:
    """Errors of the documentation views are the JSON envelope too (every route
    under /api/), not YAML or HTML from the renderer the request negotiated."""

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if isinstance(response, Response) and response.status_code >= 400:
            response.accepted_renderer = JSONRenderer()
            response.accepted_media_type = JSONRenderer.media_type
        return response


class SchemaView(JsonErrorsMixin, SpectacularAPIView):
    """`GET /api/schema`: the OpenAPI 3 document (YAML by default, JSON with `?format=json`)."""


class DocsView(JsonErrorsMixin, SpectacularSwaggerView):
    """`GET /api/docs`: Swagger UI, its assets served locally from drf-spectacular-sidecar."""
