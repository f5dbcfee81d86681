"""The rules for collection names and metadata filter keys, in one place.

``schemas`` (imported by the chute file, where only the SDK is installed) and the store both use
it, so this module imports nothing but the standard library, and the ``store`` package it sits in
imports nothing heavy either.
"""

from __future__ import annotations

import re

# 1..64 of [A-Za-z0-9_-]: a name that passes never becomes a path or SQL of its own
COLLECTION_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
COLLECTION_NAME = re.compile(COLLECTION_NAME_PATTERN)

# metadata filters (filters.py checks them; schemas states them in the OpenAPI document)
FILTER_KEY_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
FILTER_OPERATORS = ("$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte")
FILTER_LOGICAL = ("$and", "$or", "$not")
MAX_IN_VALUES = 1000
MAX_FILTER_KEYS = 64
MAX_FILTER_DEPTH = 8
