"""A stand-in for ``text-embeddings-router`` (TEI 1.9.3) for tests where the real binary cannot run.

It takes TEI's flags, computes real embeddings with the same model (its ONNX export, made once
per model and cached, served by ONNX Runtime: ``tests/tei_standin_model.py``), and
behaves as tei-facts.md describes TEI 1.9: binds only after warm-up (``--ready-delay``), checks
every request body against the schemas of TEI's own OpenAPI document (a violation is a
plain-text 422, as axum answers, and is recorded), ``Validation`` errors are 422 with a
capitalised ``error_type``, more inputs than ``--max-client-batch-size`` is a 422, an empty batch
is a 400 ``Empty``, and when its input permits (``--max-concurrent-requests``) run out it answers
429 ``Overloaded`` at once. Each request and each start is appended as a JSON line to ``--record``.

A sequence-classification model (a cross-encoder) is served as TEI serves one: ``POST /rerank``
(``{index, score, text?}`` best first; sigmoid unless ``raw_scores``), ``/embed`` and
``/embed_all`` answer 424 "model is not an embedding model"; an embedding model's ``/rerank``
answers 424 "model is not a re-ranker model". With ``--pooling splade`` the model is loaded as a
``SparseEncoder`` and served as TEI serves a SPLADE model: ``POST /embed_sparse`` (``[[{index,
value}]]``, the non-zero weights), while its ``/embed``, ``/embed_all`` and ``/rerank`` answer 424;
any other model's ``/embed_sparse`` answers 424.

Extra flags (not TEI's): --record FILE, --openapi FILE, --ready-delay S, --never-ready,
--max-input-length N, --compute-delay S, --zero-cost (``/embed`` answers a constant unit vector per
input without running the model: what the service costs in front of a TEI that costs nothing),
--onnx-cache DIR (where the model's export is kept; default ``$TMPDIR/tei-standin-onnx``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--model-id", required=True)
    p.add_argument("--revision")
    p.add_argument("--hostname", default="127.0.0.1")  # TEI defaults to 0.0.0.0; a test tool need not
    p.add_argument("--port", type=int, default=3000)
    p.add_argument("--max-batch-tokens", type=int, default=16384)
    p.add_argument("--max-client-batch-size", type=int, default=32)
    p.add_argument("--max-concurrent-requests", type=int, default=512)
    p.add_argument("--json-output", action="store_true")
    p.add_argument("--pooling")
    p.add_argument("--record", required=True)
    p.add_argument("--openapi", default=str(Path(__file__).parent / "data" / "tei-openapi.json"))
    p.add_argument("--ready-delay", type=float, default=0.0)
    p.add_argument("--never-ready", action="store_true")
    p.add_argument("--max-input-length", type=int, default=0)
    p.add_argument("--compute-delay", type=float, default=0.0)
    p.add_argument("--zero-cost", action="store_true")
    p.add_argument("--onnx-cache", default=os.path.join(tempfile.gettempdir(), "tei-standin-onnx"))
    return p.parse_args()


def main() -> None:
    args = parse_args()
    record_lock = threading.Lock()

    def record(**event) -> None:
        with record_lock, open(args.record, "a") as f:
            f.write(json.dumps({"pid": os.getpid(), "t": time.time(), **event}) + "\n")

    def log(level: str, message: str) -> None:
        print(json.dumps({"timestamp": time.time(), "level": level, "fields": {"message": message},
                          "target": "text_embeddings_router"}), flush=True)

    record(event="start", argv=sys.argv[1:], env=sorted(os.environ))
    if args.never_ready:
        log("INFO", "downloading forever")
        while True:
            time.sleep(3600)

    import jsonschema
    import uvicorn
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route
    from tei_standin_model import StandInModel  # beside this script (sys.path[0])

    doc = json.loads(Path(args.openapi).read_text())
    validators = {
        name: jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": doc["components"]})
        for name in ("EmbedRequest", "EmbedAllRequest", "RerankRequest", "EmbedSparseRequest")
    }
    is_splade = args.pooling == "splade"
    if is_splade:  # TEI's SPLADE pooling of the masked-LM head, as sentence-transformers' SparseEncoder computes it
        import torch
        from sentence_transformers import SparseEncoder

        st = SparseEncoder(args.model_id, device="cpu", local_files_only=True)
        tokenizer, model, is_reranker = st.tokenizer, None, False
        max_input = args.max_input_length or int(st.max_seq_length)
        model_lock = threading.Lock()
    else:
        model = StandInModel(args.model_id, args.revision, Path(args.onnx_cache), args.max_input_length)
        is_reranker, max_input = model.reranker, model.max_input
    permits = {"free": args.max_concurrent_requests}
    permit_lock = threading.Lock()
    time.sleep(args.ready_delay)

    def token_embeddings(texts: list[str]) -> list[np.ndarray]:
        time.sleep(args.compute_delay)
        return model.token_embeddings(texts)

    def error(status: int, kind: str, message: str) -> JSONResponse:
        return JSONResponse({"error": message, "error_type": kind}, status_code=status)

    async def read_body(request: Request, schema: str) -> tuple[dict, Response | None]:
        """The JSON body checked against TEI's own schema, or the plain-text answer axum would give."""
        try:
            body = json.loads(await request.body())
        except ValueError:
            record(path=request.url.path, status=400, violation="not json")
            return {}, PlainTextResponse("Failed to parse the request body as JSON", status_code=400)
        problems = [e.message for e in validators[schema].iter_errors(body)]
        if problems:
            record(path=request.url.path, status=422, violation=problems)
            return body, PlainTextResponse(f"Failed to deserialize the JSON body into the target type: {problems[0]}",
                                           422)
        return body, None

    def take_permits(n: int, field: str, answer) -> Response | None:
        """TEI's checks on a batch of ``n`` items, then ``n`` input permits; the refusal, if any."""
        if n == 0:
            return answer(400, error(400, "Empty", f"`{field}` cannot be empty"))
        if n > args.max_client_batch_size:
            return answer(422, error(422, "Validation",
                                     f"batch size {n} > maximum allowed batch size {args.max_client_batch_size}"))
        with permit_lock:
            if permits["free"] < n:
                return answer(429, error(429, "Overloaded", "Model is overloaded"))
            permits["free"] -= n
        return None

    def release_permits(n: int) -> None:
        with permit_lock:
            permits["free"] += n

    async def handle(request: Request, schema: str, pooled: bool) -> Response:
        if is_reranker or is_splade:
            record(path=request.url.path, status=424)
            return error(424, "Backend", "model is not an embedding model")
        body, refused = await read_body(request, schema)
        if refused is not None:
            return refused
        inputs = body["inputs"] if isinstance(body["inputs"], list) else [body["inputs"]]
        truncate = body.get("truncate")
        truncate = True if truncate is None else truncate  # --auto-truncate is on by default since 1.9
        n = len(inputs)

        def answer(status: int, response: Response) -> Response:
            record(path=request.url.path, status=status, n=n, truncate=truncate, body_keys=sorted(body))
            return response

        refused = take_permits(n, "inputs", answer)
        if refused is not None:
            return refused
        try:
            if not truncate:
                for c in model.count(inputs):
                    if c > max_input:
                        return answer(422, error(422, "Validation", f"Input validation error: `inputs` must have "
                                                                     f"less than {max_input} tokens. Given: {c}"))
            if args.zero_cost and pooled:
                dim = model.hidden_size
                return answer(200, JSONResponse([[1.0] + [0.0] * (dim - 1) for _ in inputs]))
            tokens = await run_in_threadpool(token_embeddings, inputs)
        finally:
            release_permits(n)
        if not pooled:
            return answer(200, JSONResponse([t.tolist() for t in tokens]))
        vectors = np.stack([t.mean(axis=0) for t in tokens])
        if body.get("normalize", True):
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return answer(200, JSONResponse(vectors.tolist()))

    def logits(query: str, texts: list[str], direction: str) -> np.ndarray:
        time.sleep(args.compute_delay)
        return model.logits(query, texts, direction)

    def sparse_weights(texts: list[str], direction: str) -> list[list[dict]]:
        time.sleep(args.compute_delay)
        with model_lock:
            tokenizer.truncation_side = direction
            enc = tokenizer(texts, padding=True, truncation=True, max_length=max_input, return_tensors="pt")
            with torch.inference_mode():
                dense = st(dict(enc))["sentence_embedding"].numpy()
        return [[{"index": int(i), "value": float(row[i])} for i in np.flatnonzero(row)] for row in dense]

    async def embed_sparse(request: Request) -> Response:
        if not is_splade:
            record(path=request.url.path, status=424)
            return error(424, "Backend", "model is not an embedding model with SPLADE pooling")
        body, refused = await read_body(request, "EmbedSparseRequest")
        if refused is not None:
            return refused
        inputs = body["inputs"] if isinstance(body["inputs"], list) else [body["inputs"]]
        truncate = True if body.get("truncate") is None else body["truncate"]
        n = len(inputs)

        def answer(status: int, response: Response) -> Response:
            record(path=request.url.path, status=status, n=n, truncate=truncate, body_keys=sorted(body))
            return response

        refused = take_permits(n, "inputs", answer)
        if refused is not None:
            return refused
        try:
            if not truncate:
                for c in (len(ids) for ids in tokenizer(inputs, truncation=False, verbose=False)["input_ids"]):
                    if c > max_input:
                        return answer(422, error(422, "Validation", f"Input validation error: `inputs` must have "
                                                                     f"less than {max_input} tokens. Given: {c}"))
            direction = str(body.get("truncation_direction", "Right")).lower()
            weights = await run_in_threadpool(sparse_weights, inputs, direction)
        finally:
            release_permits(n)
        return answer(200, JSONResponse(weights))

    async def rerank(request: Request) -> Response:
        if not is_reranker:
            record(path=request.url.path, status=424)
            return error(424, "Backend", "model is not a re-ranker model")
        body, refused = await read_body(request, "RerankRequest")
        if refused is not None:
            return refused
        texts, n = body["texts"], len(body["texts"])

        def answer(status: int, response: Response) -> Response:
            record(path=request.url.path, status=status, n=n, body_keys=sorted(body),
                   raw_scores=body.get("raw_scores", False))
            return response

        refused = take_permits(n, "texts", answer)
        if refused is not None:
            return refused
        try:
            direction = str(body.get("truncation_direction", "Right")).lower()
            raw = await run_in_threadpool(logits, body["query"], texts, direction)
        finally:
            release_permits(n)
        scores = raw if body.get("raw_scores", False) else 1.0 / (1.0 + np.exp(-raw))
        ranked = sorted(range(n), key=lambda i: -float(scores[i]))
        return answer(200, JSONResponse([{"index": i, "score": float(scores[i]),
                                          **({"text": texts[i]} if body.get("return_text") else {})}
                                         for i in ranked]))

    async def embed(request: Request) -> Response:
        return await handle(request, "EmbedRequest", pooled=True)

    async def embed_all(request: Request) -> Response:
        return await handle(request, "EmbedAllRequest", pooled=False)

    async def health(request: Request) -> Response:
        return Response(status_code=200)

    async def info(request: Request) -> Response:
        return JSONResponse(
            {
                "model_id": args.model_id,
                "model_sha": None,
                "model_dtype": "float32",
                "served_model_name": args.model_id,
                "model_type": (
                    {
                        "reranker": {
                            "id": args.model_id,
                            "revision": None,
                            "id2label": {"0": "LABEL_0"},
                            "label2id": {"LABEL_0": 0},
                        }
                    }
                    if is_reranker
                    else {"embedding": {"pooling": "splade" if is_splade else "mean"}}
                ),
                "max_concurrent_requests": args.max_concurrent_requests,
                "max_input_length": max_input,
                "max_batch_tokens": args.max_batch_tokens,
                "max_batch_requests": None,
                "max_client_batch_size": args.max_client_batch_size,
                "auto_truncate": True,
                "tokenization_workers": 1,
                "version": "1.9.3-standin",
            }
        )

    app = Starlette(routes=[Route("/embed", embed, methods=["POST"]), Route("/embed_all", embed_all, methods=["POST"]),
                            Route("/rerank", rerank, methods=["POST"]),
                            Route("/embed_sparse", embed_sparse, methods=["POST"]),
                            Route("/health", health), Route("/info", info)])
    log("INFO", "Ready")
    uvicorn.run(app, host=args.hostname, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
