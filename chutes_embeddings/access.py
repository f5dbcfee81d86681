"""Who may read, write and drop: store access tokens, their scopes and their namespaces.

A chute that its owner shares (``chutes share``) lets every user it is shared with call every
cord, and the platform's gateway forwards only the request body (the caller's ``Authorization``
never arrives), so a caller proves who it is with a token in the body. Tokens are deploy-time
secrets (``EMBEDDINGS_STORE_TOKENS``, ``EMBEDDINGS_STORE_TOKENS_FILE``), one entry each:

    token:scope[:namespace]

- ``scope`` is ``read`` (search, get, list), ``write`` (read, and add and delete records) or
  ``admin`` (write, and drop collections): each implies the ones before it.
- ``namespace`` binds the token to one tenant: its collections are ``namespace/collection``
  underneath, addressed and listed by their short names, and nothing outside is visible to it.
  A token without one works on the collections outside every namespace; an ``admin`` token
  without one sees every collection, by its full name (``namespace/collection``).

Only SHA-256 digests of the tokens are kept. A presented token's digest is compared with every
configured digest by ``hmac.compare_digest``, without stopping at a match, so the time a look-up
takes does not depend on which token, or how much of one, was presented. A bad entry fails at
start-up with a message that names the entry by its position, never by its text.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Sequence

from .errors import Forbidden, Unauthorized
from .store.names import SEGMENT

TOKEN_FIELD = "token"  # the body field every route reads a token from
MIN_TOKEN_CHARS = 16
MAX_TOKEN_CHARS = 512
# URL-safe base64, hex and standard base64 all fit; no separator of the entry format does
_TOKEN = re.compile(rf"^[A-Za-z0-9._~+/=-]{{{MIN_TOKEN_CHARS},{MAX_TOKEN_CHARS}}}$")
_NAMESPACE = re.compile(rf"^{SEGMENT}$")  # one segment of a collection name (``store.names``)


class Scope(IntEnum):
    """What a token may do; a larger scope implies every smaller one."""

    READ = 1
    WRITE = 2
    ADMIN = 3


# what each route needs (the request models' ``access``): a scope, or ``compute`` (no token
# unless EMBEDDINGS_REQUIRE_TOKEN_FOR_COMPUTE, then one of any scope)
COMPUTE = "compute"
NEEDS: dict[str, Scope] = {"read": Scope.READ, "write": Scope.WRITE, "admin": Scope.ADMIN}


@dataclass(frozen=True)
class Grant:
    """What an authorized caller may reach.

    ``namespace``: the tenant the caller is bound to (None: none). ``every_namespace``: the
    caller addresses collections by their full names, namespaced or not (an admin token without
    a namespace, or any caller of a service with no tokens configured).
    """

    scope: Scope
    namespace: str | None = None

    @property
    def every_namespace(self) -> bool:
        """Whether the caller sees every collection by its full name."""
        return self.scope is Scope.ADMIN and self.namespace is None


OPEN = Grant(Scope.ADMIN)  # no tokens configured: every caller may do everything, as before tokens


@dataclass(frozen=True)
class _Entry:
    digest: bytes
    grant: Grant


def _digest(token: str) -> bytes:
    # surrogatepass: a token is compared, never decoded, so no string can make this raise
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def parse_entries(text: str, source: str, *, lines: bool = False) -> list[tuple[str, _Entry]]:
    """Parse ``token:scope[:namespace]`` entries, one per line (``lines``: a file, ``#`` comments
    and blank lines skipped) or separated by commas or newlines.

    Returns (where, entry) pairs, ``where`` naming the entry for messages ("entry 2", "line 7").

    Raises:
        ValueError: a malformed entry, named by ``source`` and its position, never by its text.
    """
    parsed: list[tuple[str, _Entry]] = []
    pieces = text.splitlines() if lines else re.split(r"[,\n]", text)
    for number, raw in enumerate(pieces, start=1):
        item = raw.strip()
        if not item or (lines and item.startswith("#")):
            continue
        where = f"{source} {'line' if lines else 'entry'} {number}"
        parts = item.split(":")
        if len(parts) not in (2, 3):
            raise ValueError(f"{where}: expected token:scope or token:scope:namespace")
        token, scope = parts[0], parts[1].strip().lower()
        if len(token) < MIN_TOKEN_CHARS:
            raise ValueError(f"{where}: the token is shorter than {MIN_TOKEN_CHARS} characters")
        if not _TOKEN.match(token):
            raise ValueError(f"{where}: a token is {MIN_TOKEN_CHARS}..{MAX_TOKEN_CHARS} characters of "
                             "A-Z a-z 0-9 . _ ~ + / = -")
        if scope not in NEEDS:
            raise ValueError(f"{where}: unknown scope (expected read, write or admin)")
        namespace = parts[2].strip() if len(parts) == 3 else None
        if namespace is not None and not _NAMESPACE.match(namespace):
            raise ValueError(f"{where}: a namespace is 1..64 characters of A-Z a-z 0-9 _ -")
        parsed.append((where, _Entry(_digest(token), Grant(NEEDS[scope], namespace))))
    return parsed


class StoreAccess:
    """The configured tokens (as digests) and the rule for compute routes.

    Args:
        entries: the parsed entries (``parse_entries``).
        require_for_compute: compute routes (embed, rerank, search over a sent corpus) need a
            token of any scope too; by default they stay open.

    Raises:
        ValueError: a token listed twice (named by the positions of both entries).
    """

    def __init__(self, entries: Sequence[tuple[str, _Entry]] = (), require_for_compute: bool = False) -> None:
        seen: dict[bytes, str] = {}
        for where, entry in entries:
            if entry.digest in seen:  # start-up only: no caller's token is looked up here
                raise ValueError(f"{where} repeats the token of {seen[entry.digest]}")
            seen[entry.digest] = where
        self._entries = tuple(entry for _, entry in entries)
        self.require_for_compute = require_for_compute

    @classmethod
    def configured(cls, tokens: str, tokens_file: str, require_for_compute: bool) -> "StoreAccess":
        """The access ``EMBEDDINGS_STORE_TOKENS`` and ``EMBEDDINGS_STORE_TOKENS_FILE`` configure.

        Raises:
            ValueError: a bad entry, a token listed twice, an unreadable file.
        """
        entries = parse_entries(tokens, "EMBEDDINGS_STORE_TOKENS")
        if tokens_file:
            try:
                text = Path(tokens_file).expanduser().read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"EMBEDDINGS_STORE_TOKENS_FILE={tokens_file!r}: cannot read it "
                                 f"({type(exc).__name__})") from None
            entries += parse_entries(text, "EMBEDDINGS_STORE_TOKENS_FILE", lines=True)
        return cls(entries, require_for_compute)

    @property
    def enabled(self) -> bool:
        """Whether any token is configured (none: every caller may do everything)."""
        return bool(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"StoreAccess(tokens={len(self._entries)}, require_for_compute={self.require_for_compute})"

    def authorize(self, token: str | None, needs: str) -> Grant | None:
        """What the caller presenting ``token`` may reach on a route that ``needs`` ``read``,
        ``write``, ``admin`` or ``compute``; None for a compute route that needs no token.

        Raises:
            Unauthorized: no token, or one that is not configured (401).
            Forbidden: a configured token whose scope is smaller than the route needs (403).
        """
        if not self._entries:
            return OPEN
        if needs == COMPUTE:
            if not self.require_for_compute:
                return None
            needed, what = Scope.READ, "a store token (any scope): this service requires one on every route"
        else:
            needed = NEEDS[needs]
            what = f"a store token with the {needed.name.lower()!r} scope" + (
                "" if needed is Scope.ADMIN else " or a larger one")
        if not token:
            raise Unauthorized(f"this route needs {what}; send it in the body's {TOKEN_FIELD!r} field",
                               field=TOKEN_FIELD, limit=needed.name.lower())
        grant = self.grant_of(token)
        if grant is None:
            raise Unauthorized(f"the token is not valid here; this route needs {what}", field=TOKEN_FIELD,
                               limit=needed.name.lower())
        if grant.scope < needed:
            raise Forbidden(f"the token's scope is {grant.scope.name.lower()!r}; this route needs {what}",
                            field=TOKEN_FIELD, limit=needed.name.lower())
        return grant

    def grant_of(self, token: str) -> Grant | None:
        """The grant of a configured token, None for any other.

        Every configured digest is compared, in constant time each, and the loop never stops
        early: how long this takes does not depend on the token presented.
        """
        presented = _digest(token)
        found: Grant | None = None
        for entry in self._entries:
            if hmac.compare_digest(entry.digest, presented):
                found = entry.grant
        return found
