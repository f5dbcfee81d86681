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


def test_a_4xx_logs_no_error_line_on_the_real_server(live_server, live_server_dir):
    """The README's promise, through the real server's own log: a cord's 4xx (here a 422, which
    the SDK logs as an ERROR naming our exception class) shows only at DEBUG. A 415 refused by the
    request guard, sent after it, logs its INFO line: once that line is in the log, anything the
    422 logged before it is there too."""
    import uuid

    import httpx

    from tests.helpers import wait_until

    log = live_server_dir / "server.log"
    path = f"/embed?marker={uuid.uuid4().hex}"  # the route is /embed; the query marks this request
    assert httpx.post(f"{live_server}/embed", json={"inputs": []}).status_code == 422
    assert httpx.post(f"{live_server}{path}", content=b"{}", headers={"content-type": "text/plain"}).status_code == 415
    wait_until(lambda: "refused POST /embed: 415" in log.read_text(errors="replace"), 30,
               what="the guard's INFO line for the 415 in the server's log")
    errors = [line for line in log.read_text(errors="replace").splitlines() if "HTTPException" in line]
    assert errors == [], errors[:3]
