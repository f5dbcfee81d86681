from __future__ import annotations

import json

from loguru import logger

from chutes_embeddings.logs import configure_logging
from chutes_embeddings.settings import Settings


def test_quiet_by_default_and_json_on_request(capfd):
    try:
        configure_logging(Settings(log_level="INFO", log_json=True))
        logger.patch(lambda r: r.update(name="chutes.chute.cord")).info("sdk chatter per request")
        logger.patch(lambda r: r.update(name="chutes.chute.cord")).warning("sdk warning")
        logger.patch(lambda r: r.update(name="chutes_embeddings.engine.core")).info("engine ready")
        lines = [json.loads(line) for line in capfd.readouterr().out.splitlines() if line.strip()]
        messages = [line["record"]["message"] for line in lines]
        assert messages == ["sdk warning", "engine ready"]
    finally:
        configure_logging(Settings(log_level="WARNING"))
