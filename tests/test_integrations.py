"""The LangChain and LlamaIndex adapters against a live server.

LangChain's own conformance suites (``langchain-tests``: ``VectorStoreIntegrationTests`` sync and
async, ``EmbeddingsIntegrationTests``) run unchanged on our classes; no test of them is skipped.
LlamaIndex runs end to end through ``VectorStoreIndex`` with our embedding and store.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_tests.integration_tests import EmbeddingsIntegrationTests, VectorStoreIntegrationTests

from chutes_embeddings.integrations.langchain import ChutesEmbeddings, ChutesRerank, ChutesVectorStore


def _collection() -> str:
    return "it_" + uuid.uuid4().hex[:12]


class TestChutesVectorStoreStandard(VectorStoreIntegrationTests):
    """LangChain's suite, with its 6-dimension fake embeddings sent as the caller's vectors."""

    @pytest.fixture
    def vectorstore(self, live_server: str) -> Any:
        store = ChutesVectorStore(live_server, _collection(), embedding=self.get_embeddings())
        try:
            yield store
        finally:
            store.delete()  # drops the collection


class TestChutesEmbeddingsStandard(EmbeddingsIntegrationTests):
    @pytest.fixture(autouse=True)
    def _server(self, live_server: str) -> None:
        type(self).base_url = live_server

    @property
    def embeddings_class(self) -> type[ChutesEmbeddings]:
        return ChutesEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"base_url": self.base_url}


DOCS = [
    Document(page_content="Paris is the capital of France", metadata={"lang": "en", "year": 2020}),
    Document(page_content="Berlin is the capital of Germany", metadata={"lang": "en", "year": 2021}),
    Document(page_content="Madrid est la capitale de l'Espagne", metadata={"lang": "fr", "year": 2022}),
    Document(page_content="A recipe for sourdough bread", metadata={"lang": "en", "year": 2023}),
]


@pytest.fixture
def server_side_store(live_server):
    store = ChutesVectorStore(live_server, _collection())  # the server embeds
    store.add_documents(DOCS)
    yield store
    store.delete()


def test_server_side_store_searches_filters_and_retrieves(server_side_store, live_server):
    store = server_side_store
    top = store.similarity_search_with_score("What is the capital of France?", k=2)
    assert top[0][0].page_content == DOCS[0].page_content and -1 <= top[0][1] <= 1
    filtered = store.similarity_search("capital", k=4, filter={"$or": [{"lang": "fr"}, {"year": {"$gte": 2023}}]})
    assert {d.page_content for d in filtered} == {DOCS[2].page_content, DOCS[3].page_content}
    retriever = store.as_retriever(search_type="similarity_score_threshold",
                                   search_kwargs={"k": 4, "score_threshold": 0.7, "filter": {"lang": "en"}})
    found = retriever.invoke("capital of France")
    assert found and all(d.metadata["lang"] == "en" for d in found)
    assert found[0].page_content == DOCS[0].page_content
    mmr = store.max_marginal_relevance_search("capital city", k=2, fetch_k=4)
    assert len(mmr) == 2 and len({d.id for d in mmr}) == 2
    same = httpx.post(f"{live_server}/store/search", json={"collection": store.collection, "query": "bread",
                                                           "top_k": 1}).json()["results"][0]
    assert store.similarity_search("bread", k=1)[0].id == same["id"]
    # hybrid and lexical retrieval through search kwargs and as_retriever
    hybrid = store.as_retriever(search_kwargs={"k": 2, "mode": "hybrid", "fusion": "relative_score", "alpha": 0.5})
    assert hybrid.invoke("capital of France")[0].page_content == DOCS[0].page_content
    lexical = store.similarity_search_with_score("Germany", k=4, mode="lexical")
    assert [d.page_content for d, _ in lexical] == [DOCS[1].page_content] and lexical[0][1] > 0
    assert store.similarity_search("capitale", k=4, mode="lexical", filter={"lang": "en"}) == []


def test_from_texts_and_async_twins(live_server):
    name = _collection()
    store = ChutesVectorStore.from_texts(["alpha text", "beta text"], None, [{"n": 1}, {"n": 2}], ids=["a", "b"],
                                         base_url=live_server, collection=name)

    async def main() -> tuple[Any, Any, Any]:
        await store.aadd_texts(["gamma text"], [{"n": 3}], ids=["c"])
        hits = await store.asimilarity_search("gamma", k=1)
        got = await store.aget_by_ids(["a", "c", "missing"])
        await store.adelete(["a"])
        return hits, got, await store.aget_by_ids(["a"])

    try:
        hits, got, after = asyncio.run(main())
        assert hits[0].id == "c" and {d.id for d in got} == {"a", "c"} and after == []
    finally:
        store.delete()


def test_rerank_compressor_puts_scores_in_metadata(live_server):
    rerank = ChutesRerank(base_url=live_server, top_n=2)
    out = rerank.compress_documents(DOCS, "capital of France")
    assert [d.page_content for d in out][0] == DOCS[0].page_content and len(out) == 2
    assert out[0].metadata["relevance_score"] >= out[1].metadata["relevance_score"]
    assert "relevance_score" not in DOCS[0].metadata, "inputs are not mutated"
    assert [d.page_content for d in asyncio.run(rerank.acompress_documents(DOCS, "capital of France"))] == \
        [d.page_content for d in out]


# --- LlamaIndex ----------------------------------------------------------------------------------------
def test_llama_index_end_to_end(live_server):
    from llama_index.core import Document as LIDocument
    from llama_index.core import StorageContext, VectorStoreIndex
    from llama_index.core.vector_stores.types import FilterOperator, MetadataFilter, MetadataFilters

    from chutes_embeddings.integrations.llama_index import ChutesEmbedding
    from chutes_embeddings.integrations.llama_index import ChutesRerank as LIRerank
    from chutes_embeddings.integrations.llama_index import ChutesVectorStore as LIStore

    store = LIStore(live_server, _collection())
    embed = ChutesEmbedding(live_server)
    documents = [LIDocument(text=d.page_content, metadata=d.metadata, doc_id=f"doc{i}") for i, d in enumerate(DOCS)]
    try:
        index = VectorStoreIndex.from_documents(documents, embed_model=embed,
                                                storage_context=StorageContext.from_defaults(vector_store=store))
        retriever = index.as_retriever(similarity_top_k=2)
        top = retriever.retrieve("What is the capital of France?")
        assert top[0].node.get_content() == DOCS[0].page_content and top[0].node.ref_doc_id == "doc0"
        # the same answer through the HTTP API (the store kept our model's vectors)
        http = httpx.post(f"{live_server}/store/search", json={"collection": store.collection,
                                                               "query": "What is the capital of France?",
                                                               "top_k": 2}).json()["results"]
        assert [r["id"] for r in http] == [n.node.node_id for n in top]
        assert [round(r["score"], 4) for r in http] == [round(n.score, 4) for n in top]
        only_fr = MetadataFilters(filters=[MetadataFilter(key="lang", value="fr")])
        assert [n.node.metadata["lang"] for n in index.as_retriever(filters=only_fr).retrieve("capital")] == ["fr"]
        either = MetadataFilters(filters=[MetadataFilter(key="year", value=2020),
                                          MetadataFilter(key="year", operator=FilterOperator.GTE, value=2023)],
                                 condition="or")
        years = {n.node.metadata["year"] for n in index.as_retriever(filters=either, similarity_top_k=4).retrieve("x")}
        assert years == {2020, 2023}
        reranked = LIRerank(base_url=live_server, top_n=1).postprocess_nodes(top, query_str="capital of France")
        assert reranked[0].node.get_content() == DOCS[0].page_content
        index.delete_ref_doc("doc0")
        assert all(n.node.ref_doc_id != "doc0" for n in retriever.retrieve("capital of France"))
        assert len(store.get_nodes()) == 3
        store.delete_nodes(filters=MetadataFilters(filters=[MetadataFilter(key="lang", value="fr")]))
        assert {n.metadata["lang"] for n in store.get_nodes()} == {"en"}
        async_hit = asyncio.run(store.aquery(_query(embed, "sourdough bread")))
        assert async_hit.nodes[0].ref_doc_id == "doc3" and async_hit.similarities[0] > 0.5
        hybrid = index.as_retriever(vector_store_query_mode="hybrid", alpha=0.5, similarity_top_k=2)
        assert hybrid.retrieve("sourdough")[0].node.ref_doc_id == "doc3"
        keyword = index.as_retriever(vector_store_query_mode="text_search", similarity_top_k=3)
        assert [n.node.ref_doc_id for n in keyword.retrieve("Germany")] == ["doc1"]
    finally:
        store.clear()
    assert store.get_nodes() == []


def _query(embed: Any, text: str) -> Any:
    from llama_index.core.vector_stores.types import VectorStoreQuery

    return VectorStoreQuery(query_embedding=embed.get_query_embedding(text), similarity_top_k=1)


def test_llama_index_refuses_operators_the_store_lacks():
    from llama_index.core.vector_stores.types import FilterOperator, MetadataFilter, MetadataFilters

    from chutes_embeddings.integrations.llama_index import to_filter

    with pytest.raises(ValueError, match="text_match"):
        to_filter(MetadataFilters(filters=[MetadataFilter(key="k", value="v", operator=FilterOperator.TEXT_MATCH)]))
    assert to_filter(MetadataFilters(filters=[MetadataFilter(key="k", value=[1, 2], operator=FilterOperator.IN)],
                                     condition="not")) == {"$not": {"$and": [{"k": {"$in": [1, 2]}}]}}


# --- the store API underneath: callers' vectors, query_vector, get by filter ---------------------------
def test_callers_vectors_and_query_vector_over_http(live_server):
    coll = _collection()
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((3, 8)).tolist()
    with httpx.Client(base_url=live_server, timeout=60) as http:
        added = http.post("/store/add", json={"collection": coll, "texts": ["a", "b", "c"], "ids": ["1", "2", "3"],
                                              "vectors": vectors, "vector_model": "my-model"}).json()
        assert added["total_in_collection"] == 3
        hit = http.post("/store/search", json={"collection": coll, "query_vector": vectors[1], "top_k": 1}).json()
        assert hit["results"][0]["id"] == "2" and hit["model"] == "my-model" and hit["query"] is None
        assert abs(hit["results"][0]["score"] - 1.0) < 1e-5
        server_embedded = http.post("/store/add", json={"collection": coll, "texts": ["d"]})
        assert server_embedded.status_code == 409
        wrong_dim = http.post("/store/add", json={"collection": coll, "texts": ["d"], "vectors": [[1.0] * 9],
                                                  "vector_model": "my-model"})
        assert wrong_dim.status_code == 409
        text_query = http.post("/store/search", json={"collection": coll, "query": "a"})
        assert text_query.status_code == 409 and "query_vector" in text_query.json()["detail"]["message"]
        bad_query = http.post("/store/search", json={"collection": coll, "query_vector": [1.0] * 7})
        assert bad_query.status_code == 422 and bad_query.json()["detail"]["field"] == "query_vector"
        zero = http.post("/store/add", json={"collection": coll, "texts": ["z"], "vectors": [[0.0] * 8],
                                             "vector_model": "my-model"})
        assert zero.status_code == 422 and zero.json()["detail"]["field"] == "vectors[0]"
        both = http.post("/store/search", json={"collection": coll, "query": "a", "query_vector": vectors[0]})
        assert both.status_code == 422
        found = http.post("/store/get", json={"collection": coll, "filter_metadata": {}, "limit": 2}).json()
        assert [r["id"] for r in found["records"]] == ["1", "2"]
        http.post("/store/drop", json={"collection": coll})


def test_seed_client_aliases(live_server):
    from chutes_embeddings import EmbeddingsClient

    coll = _collection()
    with EmbeddingsClient(live_server) as client:
        client.add_to_store(["Paris is in France", "Berlin is in Germany"], collection=coll)
        assert client.search_store("capital of France", collection=coll, top_k=1)["results"][0]["text"] == \
            "Paris is in France"
        client.store_drop(coll)


# --- the README's two RAG snippets run as written (against this live server) --------------------------
def _readme_blocks(marker: str) -> list[str]:
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    return [b for b in blocks if b.startswith(marker)]


@pytest.mark.parametrize("marker,expected", [("# RAG with LangChain", "TEI serves embedding models over HTTP."),
                                             ("# RAG with LlamaIndex", "TEI serves embedding models over HTTP.")])
def test_readme_rag_snippets_run_as_written(live_server, capsys, marker, expected):
    [block] = _readme_blocks(marker)
    exec(compile(block.replace("http://127.0.0.1:8000", live_server), f"README:{marker}", "exec"), {})
    printed = capsys.readouterr().out
    assert f"Context: {expected}" in printed and "Question: How are embedding models served?" in printed


# Run by their own tests: the rerank block needs a cross-encoder (tests/test_rerank.py), the RAG
# snippets check what they print (above).
RUN_ELSEWHERE = ("# Rerank with the Cohere SDK", "# RAG with")


def test_every_other_readme_python_block_runs_as_written(live_server, monkeypatch):
    """The README's other Python blocks, in order and sharing one namespace as a reader's session
    would, against this live server (only the URL changes)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # huggingface_hub's client, on loopback only
    blocks = [b for b in _readme_blocks("") if not b.startswith(RUN_ELSEWHERE)]
    assert len(blocks) >= 5
    namespace: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block.replace("http://127.0.0.1:8000", live_server), f"README:python-{i}", "exec"), namespace)


# --- the README's curl examples run as written (against this live server) ----------------------------
def _readme_shell_blocks() -> list[list[str]]:
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```bash\n")[1:]]
    return [[line for line in b.splitlines() if line and not line.startswith("#")] for b in blocks if "curl " in b]


def test_readme_curl_examples_run_as_written(live_server):
    """Each curl line of the README, run by bash as written (only ``B`` points at this server),
    answers JSON that is no error: the section that adds, searches and drops ``docs``, then the
    reranking block (after adding ``docs`` again, as its comment says)."""
    import json
    import subprocess

    curl_section, rerank_block = ([b for b in _readme_shell_blocks() if b[0].startswith("B=")],
                                  [b for b in _readme_shell_blocks() if not b[0].startswith("B=")])
    [section] = curl_section
    [rerank] = rerank_block
    preamble = [line.replace("http://127.0.0.1:8000", live_server) for line in section if "=" in line.split()[0]]
    commands = [line for line in section if line.startswith("curl ")]
    add = next(line for line in commands if "/store/add" in line)
    drop = next(line for line in commands if "/store/drop" in line)
    for line in commands + [add] + rerank + [drop]:
        run = subprocess.run(["bash", "-c", "\n".join([*preamble, line])], capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, (line, run.stderr)
        answer = json.loads(run.stdout)
        assert not (isinstance(answer, dict) and ("error" in answer or "detail" in answer)), (line, answer)


LONG = "\n\n".join(f"Section {i}. " + "Sourdough needs a lively starter and a hot oven. " * 8 for i in range(4))


def test_langchain_documents_with_chunking_become_store_documents(live_server):
    store = ChutesVectorStore(live_server, _collection())  # the server cuts and embeds
    try:
        ids = store.add_documents([Document(page_content=LONG, metadata={"kind": "bread"}, id="bread"),
                                   DOCS[0]], ids=["bread", "paris"], chunking={"max_tokens": 48})
        assert ids == ["bread", "paris"]
        hits = store.similarity_search("a hot oven for sourdough", k=3)
        assert {h.metadata["document_id"] for h in hits} == {"bread"} and hits[0].metadata["kind"] == "bread"
        start, end = hits[0].metadata["span"]
        assert LONG[start:end] == hits[0].page_content
        grouped = store.similarity_search("a hot oven for sourdough", k=2, group_by="document")
        assert [h.metadata["document_id"] for h in grouped] == ["bread", "paris"]
        store.delete(["bread"])
        assert {h.metadata["document_id"] for h in store.similarity_search("sourdough", k=3)} == {"paris"}
        with pytest.raises(ValueError, match="chunking"):
            ChutesVectorStore(live_server, _collection(), embedding=ChutesEmbeddings(live_server)).add_texts(
                [LONG], chunking={})
    finally:
        store.delete()


def test_llama_index_documents_become_store_documents_cut_by_the_server(live_server):
    from llama_index.core import Document as LIDocument
    from llama_index.core import VectorStoreIndex

    from chutes_embeddings.integrations.llama_index import ChutesEmbedding
    from chutes_embeddings.integrations.llama_index import ChutesVectorStore as LIStore

    store = LIStore(live_server, _collection())
    try:
        assert store.add_documents([LIDocument(text=LONG, metadata={"kind": "bread"}, doc_id="bread"),
                                    LIDocument(text=DOCS[0].page_content, doc_id="paris")],
                                   chunking={"max_tokens": 48}) == ["bread", "paris"]
        index = VectorStoreIndex.from_vector_store(store, embed_model=ChutesEmbedding(live_server))
        top = index.as_retriever(similarity_top_k=2).retrieve("a hot oven for sourdough")
        assert [n.node.ref_doc_id for n in top] == ["bread", "bread"] and top[0].node.metadata == {"kind": "bread"}
        assert LONG[top[0].node.start_char_idx:top[0].node.end_char_idx] == top[0].node.get_content()
        asyncio.run(store.async_add_documents([LIDocument(text=LONG[:200], doc_id="bread")]))  # shrunk: replaced
        assert len(store.client.store_get(collection=store.collection, document_ids=["bread"])["records"]) == 1
        index.delete_ref_doc("bread")
        assert [n.node.ref_doc_id for n in index.as_retriever(similarity_top_k=3).retrieve("oven")] == ["paris"]
    finally:
        store.clear()
