"""Several named indexes in one process: the default collection and those of ``ASK_COLLECTIONS``.

The **default** collection is what the service had before collections: ``ASK_CORPUS`` indexed
into ``ASK_INDEX`` (or the database's default schema), served by today's routes. Every other
collection names its own corpus folder and, optionally, its index folder
(``<ASK_INDEX>/collections/<name>`` by default); with ``ASK_STORE`` its index lives in the same
database under the schema ``ask_<name>``. A collection is an ``Engine`` over settings that name
its corpus, index and namespace (``settings_for``), made on first use and kept; they share the
query encoder.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import COLLECTION_NAME, Settings
from .store.base import StoreError

if TYPE_CHECKING:
    from .engine import Engine

DEFAULT = "default"


class CollectionNotFound(LookupError):
    """No collection of that name is configured."""


def names(settings: Settings) -> list[str]:
    return [DEFAULT, *sorted(settings.collections)]


def settings_for(settings: Settings, name: str | None) -> Settings:
    """The settings of collection ``name`` (None or "default": the default collection)."""
    if name is None or name == DEFAULT:
        return settings.model_copy(update={"collection": None}) if settings.collection else settings
    spec = settings.collections.get(name) if isinstance(name, str) and re.match(COLLECTION_NAME, name) else None
    if spec is None:
        raise CollectionNotFound(f"no collection {str(name)[:60]!r}; collections: {', '.join(names(settings))}")
    index = spec.index or Path(settings.index) / "collections" / name
    return settings.model_copy(update={"corpus": Path(spec.corpus).expanduser(), "index": Path(index).expanduser(),
                                       "collection": name})


@dataclass(frozen=True, slots=True)
class CollectionSummary:
    name: str
    default: bool
    documents: int
    chunks: int
    store: str  # "local" or "postgresql"
    ready: bool  # it has an index (else documents and chunks are 0)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "default": self.default, "documents": self.documents, "chunks": self.chunks,
                "store": self.store, "ready": self.ready}


class Collections:
    """The engines of the collections, keyed by name, made from ``root`` (the default's engine) on first use."""

    def __init__(self, root: Engine) -> None:
        self.root = root
        self.settings = settings_for(root.settings, None)
        self._engines: dict[str, Engine] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return names(self.settings)

    def engine(self, name: str) -> Engine:
        if name == (self.root.settings.collection or DEFAULT):
            return self.root
        found = self._engines.get(name)
        if found is not None:
            return found
        settings = settings_for(self.settings, name)  # CollectionNotFound for an unknown name
        from .engine import Engine

        with self._lock:
            if name not in self._engines:
                # The query encoder is the same model for every collection: shared once the root has it.
                self._engines[name] = Engine(settings, embedder=self.root.loaded_embedder)
            return self._engines[name]

    def summaries(self) -> list[CollectionSummary]:
        out = []
        for name in self.names():
            engine = self.engine(name)
            store = "postgresql" if engine.settings.store else "local"
            try:
                stats = engine.stats() if engine.has_index() else None
            except StoreError:
                stats = None
            out.append(CollectionSummary(name, name == DEFAULT, stats.documents if stats else 0,
                                         stats.chunks if stats else 0, store, stats is not None))
        return out
