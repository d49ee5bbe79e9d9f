"""The command line's edges: one-line errors (JSON with ``--json``), never a traceback, and every entry
point building the default index on first use."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from service import cli
from service.config import PROJECT_ROOT

SEEDS = PROJECT_ROOT / "seeds"


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    for name in ("ASK_SERVER", "ASK_API_KEY"):
        if env is None or name not in env:
            full_env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "service", *args], env=full_env, capture_output=True, text=True,
                          timeout=timeout, cwd=PROJECT_ROOT)


def assert_one_line_error(r: subprocess.CompletedProcess[str], *words: str) -> None:
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and r.stdout == "", r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_ask_with_a_file_as_index(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert_one_line_error(run("ask", "--index", str(afile), "q"), "is a file, not an index folder")


def test_ask_with_a_missing_index_says_how_to_build_it(tmp_path: Path) -> None:
    assert_one_line_error(run("ask", "--index", str(tmp_path / "none"), "q"), "python -m service index")
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize("server", ["not-a-url", "ftp://127.0.0.1", "http://", "127.0.0.1:8000"])
def test_ask_server_needs_a_url(server: str) -> None:
    assert_one_line_error(run("ask", "--server", server, "q"), "--server needs the service's URL")


def test_ask_server_unreachable_is_one_line() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once the socket closes
    assert_one_line_error(run("ask", "--server", f"http://127.0.0.1:{port}", "q"), "cannot reach")


def test_json_errors_are_json() -> None:
    r = run("ask", "--json", "--server", "not-a-url", "q")
    assert r.returncode == 1 and r.stderr == ""
    error = json.loads(r.stdout)["error"]
    assert error["code"] == "bad_server" and "--server" in error["message"]


@pytest.mark.parametrize("k", ["0", "-1", "x"])
def test_k_below_one_is_refused_in_both_modes(k: str) -> None:
    for extra in ([], ["--server", "http://127.0.0.1:9"]):
        r = run("ask", "--k", k, *extra, "q")
        assert r.returncode == 2 and "--k" in r.stderr and "Traceback" not in r.stderr


def test_ask_server_help_says_how_to_pass_a_key() -> None:
    r = subprocess.run([sys.executable, "-m", "service.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert "ASK_API_KEY" in " ".join(r.stdout.split())


def test_index_onto_a_file(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert_one_line_error(run("index", "--corpus", str(SEEDS), "--index", str(afile)), "could not write the index",
                          "a file stands where a folder is needed")


def test_index_onto_a_read_only_file_system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """EROFS cannot be had without privileges here: the lock file's creation fails as it would."""
    real_open = os.open

    def read_only(path: str | os.PathLike[str], flags: int, *args: int, **kwargs: int) -> int:
        if str(path).startswith(str(tmp_path / "ro")) and flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kwargs)

    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(os, "open", read_only)
    code = cli.admin_main(["index", "--corpus", str(SEEDS), "--index", str(tmp_path / "ro" / "index")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert "could not write the index" in err and "Read-only file system" in err


def test_unexpected_errors_are_one_line_with_a_hint(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    def broken(args: argparse.Namespace) -> int:
        raise ZeroDivisionError("boom")

    assert cli._run(argparse.Namespace(func=broken, verbose=False, json=False)) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unexpected ZeroDivisionError: boom") and "-v" in err
    with pytest.raises(ZeroDivisionError):  # -v shows the traceback
        cli._run(argparse.Namespace(func=broken, verbose=True, json=False))


# -- every entry point builds the default index on first use -----------------------------------------------------
@pytest.fixture
def fresh_defaults(tmp_path: Path) -> dict[str, str]:
    """The defaults as a fresh clone has them: ``ASK_INDEX`` (unbuilt) and ``ASK_CORPUS`` stand for
    ``index/`` and ``seeds/``, so the test never writes into the checkout."""
    import shutil

    shutil.copytree(SEEDS, tmp_path / "seeds")
    return {"ASK_INDEX": str(tmp_path / "index"), "ASK_CORPUS": str(tmp_path / "seeds"),
            "ASK_CACHE_DIR": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}


@pytest.mark.model
@pytest.mark.anyio
async def test_mcp_builds_the_default_index(fresh_defaults: dict[str, str]) -> None:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/root"), "HF_HUB_OFFLINE": "1",
           **fresh_defaults}
    for name in ("XDG_CACHE_HOME", "TMPDIR", "LANG"):
        if name in os.environ:
            env[name] = os.environ[name]
    params = StdioServerParameters(command=sys.executable, args=["-m", "service", "mcp"], env=env,
                                   cwd=str(PROJECT_ROOT))
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        r = await session.call_tool("ask", {"question": "who visited Myanmar?"})
        assert not r.is_error, r.content
        assert "Liu Zhongyi" in r.structured_content["answer"]
    assert (Path(fresh_defaults["ASK_INDEX"]) / "CURRENT").exists()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.model
def test_serve_builds_the_default_index(fresh_defaults: dict[str, str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **fresh_defaults}
    env.pop("ASK_API_KEY", None)
    proc = subprocess.Popen([sys.executable, "-m", "service", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=PROJECT_ROOT)
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
                if r.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate(timeout=10)
            time.sleep(0.3)
        assert r.json()["documents"] == 5
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=30)
    assert "building it from" in err
