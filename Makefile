# Rankwise. The README's quickstart is `make demo` and `make test`; everything else here is reference.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
# The pinned build is the local CPU wheel; an unpinned torch would pull gigabytes of CUDA packages.
TORCH_VERSION := 2.13.0
STAMP := $(VENV)/.installed
# The demo's model: a tiny checkpoint with random weights and whole-word tokens (readable noise), built
# once, so comparisons exist at start. RANKWISE_DEMO_MODEL or RANKWISE_DEMO_OPENAI_URL take its place.
DEMO_CHECKPOINT := var/checkpoints/tiny-words

TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/rankwise
TEST_BROKER_URL ?= redis://127.0.0.1:6379/15
TEST_ENV := DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL)
PYTEST_ARGS ?=

# The browser tests drive Debian's Chromium; Playwright never downloads a browser.
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo demo-setup install chromium test preflight lint format typecheck clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(PY) -m pip install --quiet -e ".[inference,dev]"
	touch $@

## make demo: install, migrate the SQLite file, seed, build the tiny checkpoint and generate with it
## (inline, no Redis needed), serve on http://127.0.0.1:8000
demo: demo-setup
	$(PY) manage.py runserver 127.0.0.1:8000

demo-setup: install
	$(PY) manage.py migrate --noinput
	test -f $(DEMO_CHECKPOINT)/config.json || $(PY) manage.py make_tiny_checkpoint --words $(DEMO_CHECKPOINT)
	$(PY) manage.py seed_demo --checkpoint $(DEMO_CHECKPOINT)

## make test: install (Chromium too, when missing), check PostgreSQL and Redis, lint, run every test
test: install chromium preflight lint typecheck
	$(TEST_ENV) $(PY) -m pytest $(PYTEST_ARGS)

chromium:
	test -x $(CHROMIUM) || { $(SUDO) apt-get update && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; }

preflight: install
	$(TEST_ENV) $(PY) tests/preflight.py

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

typecheck: install
	$(VENV)/bin/mypy feedback annotate inference

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
