"""The embedding model's prompts: which text goes before an input, by prompt name.

A model that was trained with instructions (e5, bge, gte, nomic, Qwen3-Embedding) names its
prompts in its sentence-transformers config (``prompts``, ``default_prompt_name``). The engine
prepends the chosen prompt's text to every input before tokenising it, as
``SentenceTransformer.encode(prompt_name=...)`` does, so whoever serves the forward pass (the
local model or TEI) sees the same text, the cache keys the prompted text, and token counts
include the prompt's tokens (as TEI counts them).

Retrieval needs two of them: one for queries and one for the documents searched. This module is
the one place that says which of a model's prompts those are (``query_prompt``,
``document_prompt``) and how Cohere's ``input_type`` maps onto them (``prompt_for_input_type``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from ..errors import InvalidInput

# The names models use for their retrieval prompts, the first a model defines wins.
QUERY_PROMPT_NAMES = ("query", "search_query")
DOCUMENT_PROMPT_NAMES = ("document", "passage", "search_document", "corpus")
# Cohere's embed ``input_type`` values; the last two map onto prompts of the same name.
INPUT_TYPES = ("search_query", "search_document", "classification", "clustering")


@dataclass(frozen=True)
class ModelPrompts:
    """A model's prompts (name -> text, in its config's order) and the one used when a request
    names none (``default_name``; None: no prompt)."""

    prompts: Mapping[str, str] = field(default_factory=dict)
    default_name: str | None = None

    def __post_init__(self) -> None:
        if self.default_name is not None and self.default_name not in self.prompts:
            raise ValueError(f"default prompt {self.default_name!r} is not one of the model's prompts "
                             f"{list(self.prompts)}")

    @property
    def names(self) -> list[str]:
        """The prompt names the model defines, in its config's order."""
        return list(self.prompts)

    def text(self, name: str | None) -> str:
        """The text to prepend for ``name`` (None: the default prompt's; "" when there is none).

        Raises:
            InvalidInput: the model defines no prompt ``name`` (``field``: prompt_name,
                ``limit``: the names it does define).
        """
        if name is None:
            return self.prompts[self.default_name] if self.default_name is not None else ""
        if name not in self.prompts:
            defined = (f"one of the model's prompts {self.names}" if self.prompts
                       else "a prompt of this model: it defines none")
            raise InvalidInput(f"prompt_name {name!r} is not {defined}", field="prompt_name", limit=self.names)
        return self.prompts[name]

    def apply(self, texts: Sequence[str], name: str | None) -> Sequence[str]:
        """``texts`` with the prompt ``name`` (None: the default) prepended (``text`` raises)."""
        prefix = self.text(name)
        return [prefix + t for t in texts] if prefix else texts

    @property
    def query_name(self) -> str | None:
        """The prompt search queries are embedded with (``query_prompt``)."""
        return query_prompt(self.prompts)

    @property
    def document_name(self) -> str | None:
        """The prompt searched texts are embedded with (``document_prompt``)."""
        return document_prompt(self.prompts)

    @property
    def symmetric(self) -> bool:
        """Whether queries and searched texts get the same text before them (so one forward
        pass can embed both)."""
        return self.text(self.query_name) == self.text(self.document_name)


NO_PROMPTS = ModelPrompts()


def _first_defined(prompts: Mapping[str, str], names: Sequence[str]) -> str | None:
    return next((n for n in names if n in prompts), None)


def query_prompt(prompts: Mapping[str, str]) -> str | None:
    """The prompt a search query is embedded with: the first of ``QUERY_PROMPT_NAMES`` the model
    defines (None: none, so the model's default applies)."""
    return _first_defined(prompts, QUERY_PROMPT_NAMES)


def document_prompt(prompts: Mapping[str, str]) -> str | None:
    """The prompt stored and searched texts are embedded with: the first of
    ``DOCUMENT_PROMPT_NAMES`` the model defines (None: none, so the model's default applies)."""
    return _first_defined(prompts, DOCUMENT_PROMPT_NAMES)


def prompt_for_input_type(input_type: str, prompts: Mapping[str, str]) -> str | None:
    """The prompt name for Cohere's ``input_type``: the query prompt for ``search_query``, the
    document prompt for ``search_document``, the prompt named ``classification`` or
    ``clustering`` for those when the model defines it; None otherwise (the model's default applies).

    Raises:
        InvalidInput: ``input_type`` is not one of ``INPUT_TYPES``.
    """
    if input_type == "search_query":
        return query_prompt(prompts)
    if input_type == "search_document":
        return document_prompt(prompts)
    if input_type in INPUT_TYPES:
        return input_type if input_type in prompts else None
    raise InvalidInput(f"input_type {input_type!r} is not one of {list(INPUT_TYPES)}", field="input_type",
                       limit=list(INPUT_TYPES))
