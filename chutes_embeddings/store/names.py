"""The rules for collection names and metadata filter keys, in one place.

``schemas`` (imported by the chute file, where only the SDK is installed) and the store both use
it, so this module imports nothing but the standard library, and the ``store`` package it sits in
imports nothing heavy either.

A name is one segment of 1..64 of [A-Za-z0-9_-], or two joined by ``/``: ``namespace/collection``,
the full name of a collection in a tenant's namespace (``access.py``). Neither form can become a
path or SQL of its own: the stores key rows by the name, Postgres names tables by its hash, and the
embedded store's snapshot file flattens the ``/`` (``snapshot.snapshot_path``).
"""

from __future__ import annotations

import re

NAMESPACE_SEPARATOR = "/"
SEGMENT = r"[A-Za-z0-9_-]{1,64}"
COLLECTION_NAME_PATTERN = rf"^(?:{SEGMENT}/)?{SEGMENT}$"
COLLECTION_NAME = re.compile(COLLECTION_NAME_PATTERN)

# metadata filters (filters.py checks them; schemas states them in the OpenAPI document)
FILTER_KEY_PATTERN = rf"^{SEGMENT}$"  # a metadata key a filter names: one name segment
FILTER_OPERATORS = ("$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte")
FILTER_LOGICAL = ("$and", "$or", "$not")
MAX_IN_VALUES = 1000
MAX_FILTER_KEYS = 64
MAX_FILTER_DEPTH = 8

# Learned-sparse vectors both stores take (pgvector's sparsevec: dimensions at most 1e9, non-zero
# elements at most 16,000); the request models take the same bounds.
MAX_SPARSE_INDEX = 1_000_000_000
MAX_SPARSE_NONZEROS = 16_000
