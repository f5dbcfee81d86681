"""Logging: loguru to stdout (where the Chutes SDK's log server reads it), quiet by default.

The service's own records pass at ``EMBEDDINGS_LOG_LEVEL`` (INFO: start-up, TEI state, failovers;
texts are never logged at INFO). Everything else, the SDK's two INFO lines per request included,
passes at WARNING unless DEBUG or TRACE is asked for. ``EMBEDDINGS_LOG_JSON=1`` writes one JSON
object per line. Tracebacks are logged without local variables, so no request text, metadata
or stored record reaches the log at any level.
"""

from __future__ import annotations

import sys
from typing import Any

from loguru import logger

from .settings import Settings


def configure_logging(settings: Settings) -> None:
    """Replace loguru's sinks with one filtered stdout sink (see module docstring)."""
    ours = logger.level(settings.log_level).no
    others = ours if ours <= logger.level("DEBUG").no else max(ours, logger.level("WARNING").no)

    debug = logger.level("DEBUG").no

    def keep(record: dict[str, Any]) -> bool:
        name = record["name"] or ""
        if name.startswith("chutes_embeddings"):
            return record["level"].no >= ours
        if name == "chutes.chute.cord" and record["message"].endswith("HTTPException"):
            # the SDK logs every 4xx/5xx a cord answers as an ERROR, naming the exception's class
            # (ours is ServiceHTTPException, a subclass of FastAPI's): answers, not faults
            return debug >= others
        return record["level"].no >= others

    logger.remove()
    # diagnose=False: tracebacks never show local variables (request texts, stored records);
    # backtrace=False: no frames above the one that caught the exception.
    logger.add(sys.stdout, level=min(ours, others), filter=keep, serialize=settings.log_json,
               diagnose=False, backtrace=False)
