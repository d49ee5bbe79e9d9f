"""Smoke test of tests/pg.py: a real PostgreSQL primary with pgvector, a streaming replica, failover.

Everything runs on 127.0.0.1 with servers that the tests start and remove themselves.
"""

from __future__ import annotations

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector

from tests.pg import HOST, Connection, PgServer, pid_alive, wait_for_replay

ROWS = {1: [1.0, 0.0, 0.0], 2: [0.0, 1.0, 0.0], 3: [0.0, 0.0, 1.0], 4: [0.6, 0.8, 0.0]}
QUERY = np.array([0.0, 1.0, 0.0], dtype=np.float32)
NEAREST = "SELECT id FROM items ORDER BY embedding <#> %s LIMIT 2"  # <#>: negative inner product


def nearest(conn: Connection) -> list[int]:
    register_vector(conn)
    conn.execute("SET enable_seqscan = off")  # make the planner use the HNSW index
    plan = "\n".join(str(row[0]) for row in conn.execute("EXPLAIN " + NEAREST, (QUERY,)))
    assert "items_embedding_idx" in plan, plan
    return [int(row[0]) for row in conn.execute(NEAREST, (QUERY,))]


def test_primary_replica_failover() -> None:
    with PgServer() as primary:
        assert primary.url == f"postgresql://postgres@{HOST}:{primary.port}/ask_test"
        with psycopg.connect(primary.url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            register_vector(conn)
            conn.execute("CREATE TABLE items (id int PRIMARY KEY, embedding vector(3) NOT NULL)")
            conn.execute("CREATE INDEX items_embedding_idx ON items USING hnsw (embedding vector_ip_ops)")
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO items VALUES (%s, %s)",
                                [(i, np.array(v, dtype=np.float32)) for i, v in ROWS.items()])
            assert nearest(conn) == [2, 4]

        replica = primary.replica()
        assert replica.port != primary.port
        wait_for_replay(primary, replica, timeout=10)
        assert replica.lag_bytes() == 0
        assert replica.in_recovery() and not primary.in_recovery()
        with psycopg.connect(replica.url, autocommit=True) as conn:
            assert nearest(conn) == [2, 4]
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                conn.execute("INSERT INTO items VALUES (5, '[1,1,1]')")

        primary.stop()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(primary.url, connect_timeout=2)
        with psycopg.connect(replica.url, autocommit=True) as conn:  # reads survive the primary
            assert nearest(conn) == [2, 4]

        replica.promote()
        assert not replica.in_recovery()
        with psycopg.connect(replica.url, autocommit=True) as conn:
            register_vector(conn)
            conn.execute("INSERT INTO items VALUES (5, %s)", (np.array([0.0, 2.0, 0.0], dtype=np.float32),))
            assert nearest(conn) == [5, 2]


def test_restart_crash_and_close() -> None:
    server = PgServer()
    try:
        url, port = server.url, server.port
        server.query("CREATE TABLE notes (body text)")
        server.query("INSERT INTO notes VALUES ('kept')")
        server.stop()
        assert not server.is_running()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=2)
        server.start()  # same folder, same port
        assert (server.url, server.port) == (url, port)
        server.stop("immediate")  # a crash: recovery replays the WAL
        server.start()
        assert server.query("SELECT body FROM notes") == [("kept",)]

        replica = server.replica()
        folders = [server.data_dir.parent, replica.data_dir.parent]
        pids = [server.pid, replica.pid]
        assert None not in pids
    finally:
        server.close()  # closes the replica too
    server.close()  # idempotent
    assert not any(folder.exists() for folder in folders)
    assert not any(pid_alive(pid) for pid in pids if pid is not None)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(replica.url, connect_timeout=2)
