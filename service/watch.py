"""Keep an index in step with its corpus folder while it changes: ``serve --watch`` and ``index --watch``.

The operating system's file notifications (``watchfiles``: inotify on Linux, FSEvents on macOS,
ReadDirectoryChangesW on Windows; polling with ``WATCHFILES_FORCE_POLLING=true``, for network file
systems) say *that* something changed. A batch of changes ends once the folder has been quiet for
``ASK_WATCH_QUIET_MS`` (or after ``MAX_BATCH_SECONDS`` of changes without a pause), and each batch
runs the indexer's ordinary sync over the whole folder: content hashes decide what changed, so a
``git checkout`` of 1,000 files is one commit, an event for a file whose bytes did not change
commits nothing, unchanged files cost a read and a hash but no model work, and the skips and errors
are exactly those of ``index`` (hidden files, size limit, bad files reported, never fatal).

Why a whole-folder sync instead of applying the events one by one: events are hints. A moved folder
is reported as one path, editors save through temporary names, and a kernel queue can overflow; the
sync's comparison of the folder with the index is the truth either way, and reading files costs
little next to the embedding and the commit that any real change needs.

A watcher never takes its process down: a busy index (another writer holds the lock), a missing
corpus folder or any failed sync is logged and retried after ``ASK_WATCH_RETRY_SECONDS`` (doubling
while it keeps failing, up to ``MAX_RETRY_SECONDS``), and a lost watch is set up again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .config import Settings
from .store.base import IndexBusy

if TYPE_CHECKING:
    from .embedding import Embedder
    from .engine import Engine
    from .indexer import Indexer, IndexReport

log = logging.getLogger(__name__)

MAX_BATCH_SECONDS = 10.0  # a burst of changes longer than this is committed in several batches
MAX_RETRY_SECONDS = 30.0
TICK_MS = 500  # how often the watch loop wakes without changes (retries, stop requests)


@dataclass
class WatchStats:
    """What a watcher has done so far (tests and logs read it)."""

    batches: int = 0  # batches of relevant changes reported by the file system
    syncs: int = 0  # syncs that ran to the end (committing or finding nothing to do)
    commits: int = 0  # snapshots committed by those syncs
    busy: int = 0  # syncs put off because another writer held the index's lock
    errors: int = 0  # syncs or watches that failed and were retried
    last_error: str | None = None


class FolderWatcher:
    """Watch ``corpus`` and sync it into the index after each batch of changes.

    ``run()`` blocks until ``stop()`` (``index --watch``); ``start()`` runs it in a thread of its own
    (``serve --watch``). ``embedder``: a function giving the embedder to use (a server passes its
    own, already loaded); None lets the indexer load the model when something needs embedding.
    """

    def __init__(
        self,
        settings: Settings,
        index_dir: Path | None = None,
        corpus: Path | None = None,
        embedder: Callable[[], Embedder | None] | None = None,
        on_report: Callable[[IndexReport], None] | None = None,
        name: str = "default",
    ) -> None:
        self.settings = settings
        self.name = name  # the collection watched (thread names and logs)
        self.index_dir = Path(index_dir or settings.index).resolve()
        self._corpus = Path(corpus).resolve() if corpus is not None else None
        self._embedder = embedder
        self.on_report = on_report
        self.stats = WatchStats()
        self._indexer: Indexer | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._extensions = tuple(e.lower() for e in settings.extensions)
        self._polling = False

    @classmethod
    def for_engine(cls, engine: Engine, on_report: Callable[[IndexReport], None] | None = None) -> FolderWatcher:
        """A watcher that indexes with a server's own engine settings and query encoder (as its API writes do)."""
        return cls(engine.settings, engine.index_dir, embedder=lambda: engine.embedder, on_report=on_report)

    @classmethod
    def for_collections(cls, engine: Engine, on_report: Callable[[IndexReport], None] | None = None
                        ) -> list[FolderWatcher]:
        """``serve --watch``: a watcher for every configured collection's folder (the default's first),
        each syncing into its collection's index, all embedding with the server's one loaded encoder."""
        from .collections import names

        watchers = []
        for name in names(engine.settings):
            target = engine.collection(name)
            watchers.append(cls(target.settings, target.index_dir, embedder=lambda: engine.embedder,
                                on_report=on_report, name=name))
        return watchers

    # -- life cycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"ask-watch-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """Ask the watcher to stop and wait for it; a sync in progress finishes first (its commit is
        atomic either way). False when the thread was still busy after ``timeout`` seconds."""
        self._stop.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def request_stop(self) -> None:
        """Stop after the current step (safe to call from a signal handler)."""
        self._stop.set()

    # -- the loop --------------------------------------------------------------------------------------
    @property
    def corpus(self) -> Path:
        """The folder watched: the one given, else the index's own, else ``ASK_CORPUS``."""
        if self._corpus is None:
            self._corpus = self.indexer().resolve_corpus(None)
        return self._corpus

    def run(self) -> None:
        """Sync once (what changed while nobody watched), then after every batch of changes, until stopped."""
        import watchfiles

        pending, retry_at, delay = True, 0.0, self.settings.watch_retry_seconds
        while not self._stop.is_set():
            try:
                root = self.corpus
                if not root.is_dir():
                    raise FileNotFoundError(f"corpus folder {root} does not exist or is not a folder")
                changes_seen = watchfiles.watch(
                    root, watch_filter=self._relevant, debounce=int(MAX_BATCH_SECONDS * 1000),
                    step=self.settings.watch_quiet_ms, stop_event=self._stop, rust_timeout=TICK_MS,
                    yield_on_timeout=True, raise_interrupt=False, ignore_permission_denied=True,
                    force_polling=True if self._polling else None,  # None: WATCHFILES_FORCE_POLLING decides
                )
                with contextlib.closing(changes_seen):
                    for changes in changes_seen:
                        if not root.is_dir():  # deleted or moved away: watch it again once it is back
                            raise FileNotFoundError(f"corpus folder {root} is gone")
                        if changes:
                            self.stats.batches += 1
                            pending = True
                            log.debug("watch: %d changes", len(changes))
                        if pending and time.monotonic() >= retry_at:
                            outcome = self._sync(root)
                            if outcome == "done":
                                pending, delay = False, self.settings.watch_retry_seconds
                            else:  # busy: the other writer will finish; failed: back off while it keeps failing
                                retry_at = time.monotonic() + delay
                                if outcome == "failed":
                                    delay = min(delay * 2, MAX_RETRY_SECONDS)
            except Exception as exc:  # noqa: BLE001 - a lost watch is set up again, never fatal to the server
                self.stats.errors += 1
                self.stats.last_error = str(exc)
                log.warning("watch: %s; trying again in %.0f s", exc, delay)
                if not isinstance(exc, FileNotFoundError) and not self._polling and self._corpus is not None \
                        and self._corpus.is_dir():
                    # The folder is there but notifications failed (e.g. the inotify watch limit): poll it.
                    log.warning("watch: falling back to polling %s for changes", self._corpus)
                    self._polling = True
                pending = True
                self._stop.wait(delay)
                delay = min(delay * 2, MAX_RETRY_SECONDS)

    def _relevant(self, change: object, path: str) -> bool:
        """Whether a change can matter to the index (the sync decides what it means)."""
        p = Path(path)
        if p == self.index_dir or p.is_relative_to(self.index_dir):
            return False  # an index kept inside its corpus: its own commits are not news
        root = self._corpus
        if root is None or not p.is_relative_to(root):
            return True  # not expected from a watch of the folder: let the sync decide
        if any(part.startswith(".") for part in p.relative_to(root).parts):
            return False  # hidden files and folders are never indexed (editors' swap files, .git)
        if p.suffix.lower() in self._extensions:
            return True
        # A folder (created, moved or deleted) or a path gone before we looked may hold indexed files;
        # an existing file of a type that is not indexed cannot.
        return not p.is_file()

    def indexer(self) -> Indexer:
        """One indexer for the watcher's life: its store (a database's pool) and tokenizer are made once."""
        if self._indexer is None:
            from .indexer import Indexer

            embedder = self._embedder() if self._embedder is not None else None
            self._indexer = Indexer(self.settings, self.index_dir, embedder=embedder, progress=False,
                                    on_commit=self._committed)
        return self._indexer

    def _committed(self, version: str, documents: int) -> None:
        self.stats.commits += 1
        log.info("watch: committed %s (%d documents)", version, documents)

    def _sync(self, root: Path) -> str:
        """One sync of the folder: "done", "busy" (retry soon) or "failed" (retry later)."""
        try:
            report = self.indexer().sync(root)
        except IndexBusy as exc:
            self.stats.busy += 1
            log.info("watch: %s; syncing again in %.1f s", exc, self.settings.watch_retry_seconds)
            return "busy"
        except Exception as exc:  # noqa: BLE001 - logged and retried: a watcher never takes its process down
            self.stats.errors += 1
            self.stats.last_error = str(exc)
            log.warning("watch: syncing %s failed: %s", root, exc)
            return "failed"
        self.stats.syncs += 1
        if self.on_report is not None:
            try:
                self.on_report(report)
            except Exception:  # a reporting callback must not stop the watch (logged with its traceback)
                log.exception("watch: reporting a sync failed")
        return "done"


def watch_folder(settings: Settings, corpus: Path | None, on_report: Callable[[IndexReport], None]) -> int:
    """``index --watch``: keep the index in step with the folder in this thread until SIGINT or SIGTERM.

    The first signal stops the watcher once a sync in progress has committed; a second Ctrl-C
    interrupts at once (what a commit leaves behind is safe either way: snapshots are atomic).
    With ``ASK_DASK`` the passages are embedded on that cluster, as ``index`` does.
    """
    import signal

    with contextlib.ExitStack() as stack:
        embedder: Embedder | None = None
        if settings.dask:
            from .distributed import DaskEmbedder

            embedder = stack.enter_context(DaskEmbedder.from_settings(settings.dask, settings))
        watcher = FolderWatcher(settings, corpus=corpus, embedder=lambda: embedder, on_report=on_report)

        def stop(signum: int, _frame: object) -> None:
            watcher.request_stop()
            signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C interrupts

        previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            watcher.run()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
    return 0
