"""HTTP client for the embeddings service: ``EmbeddingsClient`` and ``AsyncEmbeddingsClient``.

Needs only httpx, tenacity and tqdm (no torch). Every cord has a method; errors raise the
service's own exception classes (``chutes_embeddings.errors``) rebuilt from the response body,
carrying ``status`` and the server's message.

Retries follow the error classes (``retryable``, ``acted_on``; for an answer, the class its status
names): a request the server surely did not act on (connection refused, 429) is retried for any
call; a failure after the request may have been acted on (503, a dropped connection) only for
idempotent calls (all but ``store_drop``). The wait honours the server's ``Retry-After``, else
backs off exponentially, and retries stop at ``max_retries`` or when the next wait would pass
``retry_budget_s`` (default 60 s: longer than a server restart). A read timeout is not retried:
``timeout`` is how long you are willing to wait for an answer.

``embed_batch`` takes any number of texts and splits them to the server's limit (read once from
``/info``); an error names the text by its index in your list and carries the vectors computed
before it (``err.partial``), which ``embed_batch(..., resume_from=err.partial)`` continues from.

    >>> client = EmbeddingsClient("http://127.0.0.1:8000")
    >>> client.embed("hello")["dimension"]
    384

``long_input=`` (``embed``, ``embed_batch``, ``similarity``, ``search``, ``cluster``) says what the
server does with a text over the model's window: ``truncate``, ``pool`` its windows' vectors, or (in
``embed`` only) answer ``windows``, each with its span (README, "Long inputs"); None: its setting.

``EmbeddingsClient(url, model="minilm-cls")`` names one of a service's several models (``GET
/v1/models``) in every embedding, search and store request (``rerank_model=``: in ``rerank``).
"""

from ..errors import EmbeddingsConnectionError, EmbeddingsTimeout
from .aio import AsyncEmbeddingsClient
from .base import one_vector_each, served_model, shift_text_indices
from .sync import EmbeddingsClient

__all__ = ["AsyncEmbeddingsClient", "EmbeddingsClient", "EmbeddingsConnectionError", "EmbeddingsTimeout",
           "one_vector_each", "served_model", "shift_text_indices"]
