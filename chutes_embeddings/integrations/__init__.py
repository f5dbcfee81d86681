"""Adapters for the frameworks applications are written in, over the HTTP client.

- ``chutes_embeddings.integrations.langchain`` (extra ``[langchain]``): ``ChutesEmbeddings``,
  ``ChutesVectorStore``, ``ChutesRerank``;
- ``chutes_embeddings.integrations.llama_index`` (extra ``[llama-index]``): ``ChutesEmbedding``,
  ``ChutesVectorStore``, ``ChutesRerank``.

Importing ``chutes_embeddings`` never imports a framework: each adapter module imports its own.
"""
