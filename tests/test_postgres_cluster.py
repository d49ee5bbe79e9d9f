"""PostgreSQL as the shared store, for real: a primary and a streaming replica on loopback, servers
reading the replica and writing the primary, failover by promotion, and two ``serve`` processes over
one database."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from service.api.app import create_app
from service.config import PROJECT_ROOT, Settings
from service.engine import Engine
from service.indexer import Indexer
from tests.conftest import FakeEmbedder
from tests.live_server import LiveServer
from tests.pg import PgServer

NEW = "seeds/notes/zebra.txt"
ZEBRA = b"Zebra report\n\nThe zebra parliament met in Quetzaltenango on Monday.\n"


def eventually(check: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll ``check`` until it holds (replication lag is bounded, not zero)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "did not happen in time"
        time.sleep(0.1)


def sources(url: str, query: str) -> set[str]:
    r = httpx.post(f"{url}/v1/search", json={"query": query, "k": 5}, timeout=60)
    assert r.status_code == 200, r.text
    return {h["source"] for h in r.json()["results"]}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[PgServer, Settings, FakeEmbedder]]:
    """A primary holding the seed index (fake embedder), and the settings to reach it."""
    with PgServer() as primary:
        shutil.copytree(PROJECT_ROOT / "seeds", tmp_path / "seeds")
        settings = Settings(corpus=tmp_path / "seeds", index=tmp_path / "index", cache_dir=tmp_path / "cache",
                            store=primary.url)
        embedder = FakeEmbedder()
        Indexer(settings, embedder=embedder, progress=False).sync()
        yield primary, settings, embedder


def test_replica_serves_reads_survives_the_primary_and_is_promoted(
    cluster: tuple[PgServer, Settings, FakeEmbedder],
) -> None:
    primary, settings, embedder = cluster
    replica = primary.replica()
    replica.wait_for_replay()
    writer_settings = settings
    reader_settings = settings.model_copy(update={"store_read": replica.url})
    writer = Engine(writer_settings, embedder=embedder)
    reader = Engine(reader_settings, embedder=embedder)
    with LiveServer(create_app(writer_settings, writer)) as w_url, LiveServer(create_app(reader_settings, reader)) as r_url:
        health = httpx.get(f"{r_url}/health").json()
        assert health.get("store") == "postgresql", health
        # a write on the primary is seen through the replica within a bounded lag
        r = httpx.put(f"{w_url}/v1/documents/{NEW}", content=ZEBRA, timeout=60)
        assert r.status_code == 201, r.text
        eventually(lambda: NEW in sources(r_url, "zebra parliament Quetzaltenango"))
        assert httpx.get(f"{r_url}/health").json()["documents"] == httpx.get(f"{w_url}/health").json()["documents"] == 6
        # writes through the reading server go to the primary
        r = httpx.delete(f"{r_url}/v1/documents/seeds/004_ac61203b24847f23.txt", timeout=60)
        assert r.status_code == 200, r.text
        eventually(lambda: httpx.get(f"{r_url}/health").json()["documents"] == 5)

        # the primary goes away: the replica keeps answering searches; writes are a clear 503
        primary.stop()
        assert NEW in sources(r_url, "zebra parliament Quetzaltenango")
        assert httpx.get(f"{r_url}/health").status_code == 200
        r = httpx.put(f"{r_url}/v1/documents/seeds/notes/late.txt", content=b"Late\n\nLate text.\n", timeout=60)
        assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable", r.text
        r = httpx.post(f"{w_url}/v1/search", json={"query": "zebra"}, timeout=60)
        assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable", r.text

    # promotion: the replica becomes the primary and takes writes
    replica.promote()
    promoted = settings.model_copy(update={"store": replica.url})
    engine = Engine(promoted, embedder=embedder)
    with LiveServer(create_app(promoted, engine)) as url:
        r = httpx.put(f"{url}/v1/documents/seeds/notes/after.txt",
                      content=b"After\n\nThe walrus committee met after the failover.\n", timeout=60)
        assert r.status_code == 201, r.text
        assert "seeds/notes/after.txt" in sources(url, "walrus committee failover")
        assert httpx.get(f"{url}/health").json()["documents"] == 6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.model
def test_two_serve_processes_share_one_database(tmp_path: Path) -> None:
    """Real ``python -m service serve`` processes (real model) over one database: a PUT through one is
    searchable through the other, and both report the same counts."""
    with PgServer() as pg:
        shutil.copytree(PROJECT_ROOT / "seeds", tmp_path / "seeds")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "ASK_STORE": pg.url, "ASK_CORPUS": str(tmp_path / "seeds"),
               "ASK_CACHE_DIR": str(tmp_path / "cache")}
        env.pop("ASK_API_KEY", None)
        built = subprocess.run([sys.executable, "-m", "service", "index", "--index", str(tmp_path / "caches")],
                               env=env, capture_output=True, text=True, timeout=600)
        assert built.returncode == 0, built.stderr
        assert not list((tmp_path / "caches").glob("snap-*")), "with a database, no snapshot is written locally"
        procs, urls = [], []
        try:
            for name in ("a", "b"):
                port = _free_port()
                shutil.copytree(tmp_path / "caches", tmp_path / f"caches-{name}")
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "service", "serve", "--index", str(tmp_path / f"caches-{name}"),
                     "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
                urls.append(f"http://127.0.0.1:{port}")
            for proc, url in zip(procs, urls, strict=True):
                def up(url: str = url, proc: subprocess.Popen[str] = proc) -> bool:
                    assert proc.poll() is None, proc.communicate(timeout=10)
                    try:
                        return httpx.get(f"{url}/health", timeout=5).status_code == 200
                    except httpx.TransportError:
                        return False

                eventually(up, timeout=180)
            a, b = urls
            r = httpx.put(f"{a}/v1/documents/{NEW}", content=ZEBRA, timeout=120)
            assert r.status_code == 201, r.text
            assert NEW in sources(b, "zebra parliament Quetzaltenango")
            ha, hb = httpx.get(f"{a}/health").json(), httpx.get(f"{b}/health").json()
            assert (ha["documents"], ha["chunks"], ha["snapshot"]) == (hb["documents"], hb["chunks"], hb["snapshot"])
            assert ha["documents"] == 6
            assert httpx.delete(f"{b}/v1/documents/{NEW}", timeout=120).status_code == 200
            assert NEW not in sources(a, "zebra parliament Quetzaltenango")
            assert not (tmp_path / "seeds" / "notes").exists(), "with a database, API writes touch no folder"
        finally:
            for proc in procs:
                proc.terminate()
                proc.communicate(timeout=30)


def test_a_lost_database_is_503_then_recovers(cluster: tuple[PgServer, Settings, FakeEmbedder]) -> None:
    primary, settings, embedder = cluster
    engine = Engine(settings, embedder=embedder)
    with LiveServer(create_app(settings, engine)) as url:
        assert "seeds/003_517cb5bd72187ee7.txt" in sources(url, "who visited Myanmar?")
        primary.stop()
        for method, path, body in [("POST", "/v1/search", {"query": "Myanmar"}), ("GET", "/health", None),
                                   ("GET", "/v1/documents", None)]:
            r = httpx.request(method, f"{url}{path}", json=body, timeout=60)
            assert r.status_code == 503 and r.json()["error"]["code"] in ("store_unavailable", "index_unavailable"), r.text
        primary.start()

        def back() -> bool:
            return httpx.post(f"{url}/v1/search", json={"query": "Myanmar"}, timeout=60).status_code == 200

        eventually(back, timeout=30)
        assert "seeds/003_517cb5bd72187ee7.txt" in sources(url, "who visited Myanmar?")


def test_writes_reuse_the_servers_connections(cluster: tuple[PgServer, Settings, FakeEmbedder]) -> None:
    """Each API write once opened a new connection pool that was never closed."""
    primary, settings, embedder = cluster
    engine = Engine(settings, embedder=embedder)

    def connections() -> int:
        rows = primary.query("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return int(rows[0][0])

    with LiveServer(create_app(settings, engine)) as url:
        for i in range(3):  # warm: the read pool, the write pool
            httpx.put(f"{url}/v1/documents/seeds/w/{i}.txt", content=b"W\n\nWarm text.\n", timeout=60)
        before = connections()
        for i in range(15):
            r = httpx.put(f"{url}/v1/documents/seeds/w/{i}.txt", content=f"W\n\nText {i}.\n".encode(), timeout=60)
            assert r.status_code in (200, 201), r.text
            assert httpx.delete(f"{url}/v1/documents/seeds/w/{i}.txt", timeout=60).status_code == 200
        assert connections() <= before + 1


def test_schema_migrations_and_clear_refusals(tmp_path: Path) -> None:
    from service.store import IndexIncompatible, IndexMissing
    from service.store.postgres import SCHEMA_VERSION, PostgresStore

    with PgServer() as pg:
        fresh = PostgresStore(pg.create_database("fresh"))
        assert fresh.version() is None  # the schema is created on first use, empty
        assert pg.query("SELECT version FROM ask_schema", dbname="fresh") == [(SCHEMA_VERSION,)]
        with pytest.raises(IndexMissing, match="python -m service index"):
            fresh.view()
        fresh.close()

        newer = pg.create_database("newer")
        PostgresStore(newer).version()
        pg.query("UPDATE ask_schema SET version = version + 1", dbname="newer")
        with pytest.raises(IndexIncompatible, match="newer than this program"):
            PostgresStore(newer).version()

        # a role that may not create the extension, in a database that lacks it
        pg.query("CREATE ROLE plain LOGIN")
        pg.create_database("bare")
        pg.query("ALTER DATABASE bare OWNER TO plain")
        bare = pg.url.rsplit("/", 1)[0].replace("postgres@", "plain@") + "/bare"
        with pytest.raises(IndexIncompatible, match="pgvector"):
            PostgresStore(bare).version()


def test_an_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    from service.store import StoreUnavailable
    from service.store.postgres import PostgresStore

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = PostgresStore(f"postgresql://ask:secret@127.0.0.1:{port}/ask")
    with pytest.raises(StoreUnavailable, match="cannot connect") as info:
        store.version()
    assert "secret" not in str(info.value)
