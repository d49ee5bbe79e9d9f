# Every target installs what it needs first (into .venv), so each works on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
Q      ?= who visited Myanmar?
PYTEST_ARGS ?=

.PHONY: install ask index serve mcp test lint bench bench-quality bench-speed bench-load bench-peers bench-filters browser-deps clean

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

lint: install         ## ruff over the code, tests and benchmarks; mypy over service/ (settings in pyproject.toml)
	$(BIN)/ruff check service tests bench
	$(BIN)/mypy

bench: bench-quality bench-speed

bench-quality: install
	$(BIN)/python -m bench.quality $(ARGS)

bench-speed: install
	$(BIN)/python -m bench.speed $(ARGS)

bench-load: install
	$(BIN)/python -m bench.load $(ARGS)

bench-peers: install
	$(BIN)/python -m bench.peers $(ARGS)

bench-filters: install
	$(BIN)/python -m bench.filters $(ARGS)

clean:
	rm -rf index/CURRENT index/snap-* index/.tmp-* index/*.onnx index/embed-cache.sqlite* index/.lock
