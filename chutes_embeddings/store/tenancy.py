"""The store as one caller sees it: its namespace's collections, by their short names.

``NamespacedStore`` wraps a ``StoreService`` with the reach of one authorized caller
(``access.Grant``): each verb maps the collection name the caller sent to the stored name once,
on the way in, and maps it back in what comes out (listings and error messages). The store below
never learns of tokens or namespaces; it holds names such as ``acme/docs``.

- A caller bound to namespace ``acme`` names ``docs``; the store holds ``acme/docs``. A
  collection of another namespace is simply not there for it: asking for it is asking for
  ``acme/<name>``, which answers exactly as any collection that does not exist in ``acme``.
- A caller bound to no namespace works on the collections outside every namespace.
- A caller that reaches every namespace (an admin token without one, or any caller of a service
  with no tokens configured) names collections by their full names, ``acme/docs`` included.

Only that last kind may send a name with a ``/``; any other gets 422, whatever exists.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

from ..errors import EmbeddingsError, InvalidInput
from . import CollectionInfo
from .names import NAMESPACE_SEPARATOR, SEGMENT

if TYPE_CHECKING:  # the chute file imports this module before start-up loads numpy and the engine
    from .answers import Added, Deleted, Found, Got
    from .service import StoreService


class NamespacedStore:
    """The store verbs of ``service`` within one caller's reach (see the module docstring).

    Args:
        service: the store service for every caller.
        namespace: the caller's namespace (None: none).
        every_namespace: the caller names collections by their full names and sees them all.
    """

    def __init__(self, service: StoreService, namespace: str | None, every_namespace: bool) -> None:
        self.service = service
        self.namespace = None if every_namespace else namespace
        self.every_namespace = every_namespace

    @property
    def kind(self) -> str:
        """Which store keeps the collections (``embedded`` or ``postgres``)."""
        return self.service.kind

    def stored_name(self, collection: str) -> str:
        """The name the store holds for the caller's ``collection``.

        Raises:
            InvalidInput: a name with a namespace from a caller that cannot reach other namespaces.
        """
        if self.every_namespace:
            return collection
        if NAMESPACE_SEPARATOR in collection:
            raise InvalidInput(f"collection name {collection!r}: this token names collections without a namespace "
                               "(1..64 characters of A-Z a-z 0-9 _ -)", field="collection", limit=f"^{SEGMENT}$")
        return f"{self.namespace}{NAMESPACE_SEPARATOR}{collection}" if self.namespace else collection

    def shown_name(self, stored: str) -> str | None:
        """The caller's name for a stored collection, None when it is outside the caller's reach."""
        if self.every_namespace:
            return stored
        namespace, separator, short = stored.rpartition(NAMESPACE_SEPARATOR)
        if not separator:
            return None if self.namespace else stored
        return short if namespace == self.namespace else None

    @contextmanager
    def _as_stored(self, collection: str) -> Iterator[str]:
        """Yield the stored name; an error raised inside names the collection as the caller did."""
        stored = self.stored_name(collection)
        try:
            yield stored
        except EmbeddingsError as err:
            if stored != collection:  # the stored name contains a "/": it occurs only as the name
                err.message = err.message.replace(stored, collection)
                err.args = (err.message,)
            raise

    def add(self, collection: str, *args: Any, **kwargs: Any) -> Added:
        """``StoreService.add`` on the caller's collection."""
        with self._as_stored(collection) as stored:
            return self.service.add(stored, *args, **kwargs)

    def add_documents(self, collection: str, *args: Any, **kwargs: Any) -> Added:
        """``StoreService.add_documents`` on the caller's collection."""
        with self._as_stored(collection) as stored:
            return self.service.add_documents(stored, *args, **kwargs)

    def search(self, collection: str, *args: Any, **kwargs: Any) -> Found:
        """``StoreService.search`` on the caller's collection."""
        with self._as_stored(collection) as stored:
            return self.service.search(stored, *args, **kwargs)

    def get(self, collection: str, *args: Any, **kwargs: Any) -> Got:
        """``StoreService.get`` on the caller's collection."""
        with self._as_stored(collection) as stored:
            return self.service.get(stored, *args, **kwargs)

    def delete(self, collection: str, *args: Any, **kwargs: Any) -> Deleted:
        """``StoreService.delete`` on the caller's collection."""
        with self._as_stored(collection) as stored:
            return self.service.delete(stored, *args, **kwargs)

    def drop(self, collection: str) -> None:
        """``StoreService.drop`` of the caller's collection."""
        with self._as_stored(collection) as stored:
            self.service.drop(stored)

    def list_collections(self) -> list[CollectionInfo]:
        """The collections within the caller's reach, by the caller's names."""
        shown = []
        for info in self.service.list_collections():
            name = self.shown_name(info.name)
            if name is not None:
                shown.append(info if name == info.name else dataclasses.replace(info, name=name))
        return shown
