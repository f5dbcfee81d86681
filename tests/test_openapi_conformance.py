"""The served OpenAPI document states what the server enforces: schemathesis (its checks: no 5xx,
only documented statuses and content types, answers within their schemas, invalid data refused,
valid data accepted) against the chute app over fake model services, every operation.

Valid data is refused in one way only: by the rules JSON Schema cannot state, which relate two
fields or a field and stored state. ``CROSS_FIELD`` lists them per operation, by the field the
refusal names, with the reason; any other refusal of schema-valid data fails the test.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import positive_data_acceptance

from chutes_embeddings.errors import Conflict, NotFound, Overloaded, PayloadTooLarge

EXAMPLES = 8  # per operation and mode: about 550 requests in all

TOKEN_LIMIT = "within the model's token limit when truncate is false"
CROSS_FIELD = {
    "POST /embed": {"inputs": TOKEN_LIMIT, "embedding_types": "int8 and uint8 need normalize=true (unit vectors)"},
    "POST /v1/embed": {"texts": "within the model's token limit when truncate is NONE"},
    "POST /v2/embed": {"texts": "within the model's token limit (and max_tokens) when truncate is NONE",
                       "inputs": "within the model's token limit (and max_tokens) when truncate is NONE"},
    "POST /embed/batch": {"texts": TOKEN_LIMIT},
    "POST /tei": {"inputs": TOKEN_LIMIT},
    "POST /tei/embed": {"inputs": TOKEN_LIMIT},
    "POST /tei/embed_all": {"inputs": TOKEN_LIMIT},
    "POST /embed/sparse": {"inputs": TOKEN_LIMIT},
    "POST /tei/embed_sparse": {"inputs": TOKEN_LIMIT},
    "POST /tei/rerank": {"texts": TOKEN_LIMIT},
    "POST /rerank": {"texts": TOKEN_LIMIT},
    "POST /cluster": {"n_clusters": "at most the number of texts, and not with hdbscan (which finds it)"},
    "POST /store/add": {"ids": "one per text", "metadata": "one per text, or one object for all",
                        "vectors": "one per text, of the collection's dimension",
                        "vector_model": "the collection's own model",
                        "chunking": "with documents: max_tokens within the model's window and at least "
                                    "min_chunk_tokens, overlap under max_tokens",
                        "documents": "distinct ids; at most max_store_add_chunks chunks a request"},
    "POST /store/search": {"query_vector": "not zero, and of the collection's dimension; with query only in hybrid "
                                           "mode",
                           "rerank": "reads the query text: not with query_vector",
                           "mode": "a leg the collection has (sparse: with a sparse model)",
                           "threshold": "bounds the dense leg: not in lexical or sparse mode",
                           "query": "searchable terms in lexical mode; the text lexical and sparse modes read",
                           "query_sparse": "ascending distinct ids within the sparse model's vocabulary, one value "
                                           "each"},
    "POST /search": {"mode": "sparse needs the service's sparse model",
                     "threshold": "bounds the dense leg: not in lexical or sparse mode",
                     "query": "searchable terms in lexical mode"},
}
# What schema-valid data may meet from the service's state: no such collection or record (404), a
# collection of another model or dimension (409), a full queue (429); and the body size limit (413,
# a setting, not a JSON Schema rule).
STATE_STATUSES = (NotFound.status, Conflict.status, Overloaded.status, PayloadTooLarge.status)
# A filter nested in $and/$or/$not: the document states the top level of the grammar
# (chutes_embeddings/store/filters.py), the server checks every level.
NESTED_FILTER = "filter_metadata."


def refused_field(response) -> str:
    """The field a 4xx answer names, in any dialect's shape (TEI's names it first in its message)."""
    body = response.json()
    if isinstance(body.get("detail"), dict):  # native
        return body["detail"].get("field") or ""
    if isinstance(body.get("error"), dict):  # OpenAI, Infinity
        return body["error"].get("param") or ""
    if isinstance(body.get("error"), str):  # TEI
        return body["error"].split(" ", 1)[0].rstrip(":")
    return body.get("field") or ""  # Cohere


def names_allowed(field: str, allowed: dict[str, str]) -> bool:
    """Whether ``field`` is one of ``allowed`` or an item or part of one (``inputs[3]``, ``a.b``)."""
    return field.startswith(NESTED_FILTER) or any(field == name or field.startswith((f"{name}[", f"{name}."))
                                                  for name in allowed)


@pytest.fixture(scope="module")
def openapi_schema(fake_app, fake_client):
    loaded = schemathesis.openapi.from_dict(fake_client.get("/openapi").json())
    loaded.app = fake_app
    # a body over EMBEDDINGS_MAX_BODY_BYTES is refused with 413 before it is read: a rejection too
    rejection = loaded.config.checks.negative_data_rejection
    loaded.config.checks.negative_data_rejection = type(rejection)(
        expected_statuses=[*rejection.expected_statuses, str(PayloadTooLarge.status)])
    return loaded


def runner(operation, mode):
    """Hypothesis's test of one operation: each case's answer checked (see the module docstring)."""
    allowed = CROSS_FIELD.get(operation.label, {})

    @given(operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case):
        response = case.call(headers={"host": "127.0.0.1"})
        case.validate_response(response, excluded_checks=[positive_data_acceptance])
        if mode is GenerationMode.POSITIVE and 400 <= response.status_code < 500:
            assert response.status_code in STATE_STATUSES or names_allowed(refused_field(response), allowed), (
                f"schema-valid data refused: {response.status_code} {response.text[:300]}")

    return run


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_every_operation_conforms(openapi_schema, mode):
    failures = []
    for result in openapi_schema.get_all_operations():
        operation = result.ok()
        if mode is GenerationMode.NEGATIVE and not operation.body:  # nothing to make invalid
            continue
        try:
            runner(operation, mode)()
        except (Exception, FailureGroup) as exc:
            failures.append(f"{operation.label}: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)
