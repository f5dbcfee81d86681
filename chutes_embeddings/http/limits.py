"""Every limit a caller can hit, in one table for /info: assembled once at start-up."""

from __future__ import annotations

from typing import Any

from ..settings import Settings
from ..store.filters import MAX_FILTER_KEYS, MAX_IN_VALUES
from ..store.metadata import MAX_METADATA_BYTES, MAX_METADATA_KEYS
from .payload import MAX_JSON_DEPTH


def service_limits(settings: Settings, request_limits: dict[str, Any]) -> dict[str, Any]:
    """The request models' limits (``schemas.LIMITS``) with those the HTTP layer and the store enforce."""
    return {
        **request_limits,
        "max_body_bytes": settings.max_body_bytes,
        "max_json_depth": MAX_JSON_DEPTH,
        "max_filter_keys": MAX_FILTER_KEYS,
        "max_in_values": MAX_IN_VALUES,
        "max_metadata_bytes": MAX_METADATA_BYTES,
        "max_metadata_keys": MAX_METADATA_KEYS,
        # long inputs pooled or windowed (engine/windows.py); the overlap is the default, at most half the window
        "max_windows_per_text": settings.max_windows_per_text,
        "max_request_tokens": settings.max_request_tokens,
        "window_overlap": settings.window_overlap,
    }
