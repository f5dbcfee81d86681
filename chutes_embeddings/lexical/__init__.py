"""Lexical search: how text becomes terms (``analyzer``) and BM25 over a request's own corpus (``memory``)."""
