"""What a request body may hold: JSON within limits, finite numbers, 64-bit integers.

Pure functions, no HTTP: the local server's request guard parses bodies with ``loads_body``
(syntax, nesting and number-length problems become 400 before anything else sees the body) and
every cord checks the parsed body with ``check_values`` (production parses bodies in the SDK, so
this second check is the one that always runs). Python's ``json`` accepts ``NaN`` and
``Infinity`` and integers of any size; no store can keep them faithfully and no JSON encoder on
the way out may emit them, so they are refused with the field that holds them. JSON also allows
``"\ud800"``, a lone UTF-16 surrogate, which is no Unicode text: no tokenizer, UTF-8 encoder or
database takes it, so a string (or object key) holding one is refused where it is, for every route,
here. Refusing is what TEI and OpenAI do; replacing it would change the caller's text silently.
"""

from __future__ import annotations

import functools
import json
import math
import re
from typing import Any, Iterable, get_args

import orjson
from pydantic import BaseModel

from ..errors import InvalidInput, MalformedRequest

MAX_JSON_DEPTH = 32  # objects/arrays inside each other; metadata nests well below this
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# CPython refuses to parse integer literals longer than this (int_max_str_digits).
MAX_NUMBER_DIGITS = 4300
# orjson reads an integer past 64 bits as a float, silently: a body with a run of 19+ digits is
# parsed by ``json``, which keeps integers exact (check_values then refuses one past 64 bits).
_LONG_DIGIT_RUN = re.compile(rb"\d{19}")


def field_path(loc: Iterable[Any]) -> str:
    """``("metadata", 0, "x")`` -> ``metadata[0].x`` (``body`` for the empty path)."""
    name = ""
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"


def loads_body(raw: bytes) -> Any:
    """Parse a request body as JSON.

    orjson parses every valid body without a run of 19 digits (several times faster than
    ``json``); what it refuses, and any body with such a run, is parsed by ``json``, which says why
    (line and column) or lets through what ``check_values`` then refuses naming its field (NaN, a
    lone surrogate, an integer past 64 bits).

    Raises:
        MalformedRequest: not UTF-8 JSON, nested past what the parser can take, or a number
            literal longer than ``MAX_NUMBER_DIGITS`` digits (each names the limit).
    """
    if _LONG_DIGIT_RUN.search(raw) is None:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(raw)
    except RecursionError:
        raise MalformedRequest(f"the body nests objects/arrays deeper than {MAX_JSON_DEPTH} levels",
                               field="body", limit=MAX_JSON_DEPTH) from None
    except json.JSONDecodeError as exc:
        raise MalformedRequest(f"the body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                               "send a JSON object", field="body") from None
    except UnicodeDecodeError:
        raise MalformedRequest("the body is not UTF-8 text; send a JSON object", field="body") from None
    except ValueError:  # "Exceeds the limit (4300 digits) for integer string conversion"
        raise MalformedRequest(f"a number in the body has more than {MAX_NUMBER_DIGITS} digits",
                               field="body", limit=MAX_NUMBER_DIGITS) from None


def check_values(body: Any, root: tuple[Any, ...] = ()) -> None:
    """Refuse what JSON parsers let through but nothing downstream can hold.

    Walks the parsed body without recursion (so a deep body cannot exhaust the stack).

    Raises:
        MalformedRequest: objects/arrays nested deeper than ``MAX_JSON_DEPTH`` (400).
        InvalidInput: ``NaN``/``Infinity``, an integer outside 64 bits, or a string or key that is
            not Unicode text (a lone surrogate), naming its field (422).
    """
    stack: list[tuple[Any, tuple[Any, ...], int]] = [(body, root, 1)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, dict):
            children: Iterable[tuple[Any, Any]] = value.items()
        elif isinstance(value, list):
            children = enumerate(value)
        else:
            _check_scalar(value, path)
            continue
        if depth > MAX_JSON_DEPTH:
            raise MalformedRequest(f"{field_path(path)}: objects/arrays nest deeper than {MAX_JSON_DEPTH} levels",
                                   field=field_path(path), limit=MAX_JSON_DEPTH)
        for key, child in children:
            if isinstance(child, str):
                _check_text(child, (*path, key))
            else:
                stack.append((child, (*path, key), depth + 1))
            if isinstance(key, str):
                _check_text(key, path, key=True)


def _check_text(text: str, path: tuple[Any, ...], key: bool = False) -> None:
    """Refuse a string that is not Unicode text (a lone surrogate): UTF-8 cannot encode it."""
    if text.isascii():  # the common case, and a fast one
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        where = field_path(path)
        what = "a key" if key else "the text"
        raise InvalidInput(f"{where}: {what} holds a lone UTF-16 surrogate (at character {exc.start}), which is "
                           "not Unicode text; send valid UTF-8", field=where, reason="invalid_unicode") from None


def _check_scalar(value: Any, path: tuple[Any, ...]) -> None:
    if isinstance(value, str):
        _check_text(value, path)
        return
    if isinstance(value, float) and not math.isfinite(value):
        where = field_path(path)
        raise InvalidInput(f"{where}: NaN and Infinity are not JSON numbers; send a finite number or null",
                           field=where)
    if isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
        where = field_path(path)
        raise InvalidInput(f"{where}: integers must fit in 64 bits (-2^63 .. 2^63-1); send a string or a float",
                           field=where, limit=INT64_MAX)


def read_part(model: type[BaseModel], body: Any) -> Any:
    """The part of ``body`` that ``model`` reads: a model that ignores unknown fields (the
    compatible APIs') never sees them, so they are left out here too, in nested models and in
    lists of them; what a model forbids or keeps is left in (its own validation answers for it).

    The body checks (``payload.check_values``: NaN, integers outside 64 bits, lone surrogates)
    run on this part only: a client's extra field is ignored as OpenAI, TEI and Cohere ignore it.
    """
    if not isinstance(body, dict) or model.model_config.get("extra") != "ignore":
        return body
    nested = _nested_models(model)
    out = {}
    for name, value in body.items():
        if name not in nested:
            continue
        inner = nested[name]
        if inner is not None and isinstance(value, dict):
            value = read_part(inner, value)
        elif inner is not None and isinstance(value, list):
            value = [read_part(inner, item) for item in value]
        out[name] = value
    return out


@functools.cache
def _nested_models(model: type[BaseModel]) -> dict[str, type[BaseModel] | None]:
    """Each field's name (as sent) and the one model its value (or its list's items) may hold, if any."""
    fields: dict[str, type[BaseModel] | None] = {}
    for name, info in model.model_fields.items():
        found: list[type[BaseModel]] = []
        pending = [info.annotation]
        while pending:
            kind = pending.pop()
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                found.append(kind)
            else:
                pending.extend(a for a in get_args(kind) if a is not None)
        fields[info.alias or name] = found[0] if len(found) == 1 else None
    return fields
