"""The service's own API: its verbs answer in its own shapes, errors as ``{"detail": {...}}``."""

from __future__ import annotations

from typing import Any

from ...errors import EmbeddingsError

name = "native"
ERROR_STATUSES = (400, 403, 404, 405, 408, 409, 413, 415, 422, 429, 500, 503)  # what its routes can answer besides 200


def render_error(err: EmbeddingsError) -> tuple[int, Any]:
    """The documented ``{"detail": {error_type, message, field?, limit?, ...}}`` with the error's status."""
    return err.status, {"detail": err.to_body()}
