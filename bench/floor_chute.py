"""The SDK's own floor for ``bench.overhead``: a chute whose one cord answers a constant at once.

Run by the bench exactly as the service runs (``chutes run floor_chute:chute --dev`` from ``bench/``), so
the difference between the two is what this project's code adds, and the floor is what any cord
costs on the SDK's local server (its middleware, its per-call thread and event loop).
"""

from __future__ import annotations

from typing import Any

from chutes.chute import Chute, NodeSelector

chute = Chute(username="bench", name="sdk-floor", image="parachutes/python:3.12",
              node_selector=NodeSelector(gpu_count=1), concurrency=64)


@chute.cord(public_api_path="/embed", public_api_method="POST", input_schema={"type": "object"},
            output_schema={"type": "object"}, output_content_type="application/json")
async def embed(self: Any, body: Any = None) -> dict:
    """A constant answer: no validation, no model."""
    return {"model": "none", "dimension": 0, "embeddings": []}
