# Two entry points for a new machine (Debian, Python 3.11): `make demo` and `make test`.
# Each creates or updates the virtual environment itself.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: demo test test-fast lint venv clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[postgres,dev]'
	$(PY) -m compileall -q lifelong_cli
	touch $(STAMP)

# The main job. For now: a fresh workspace, the emergency switches, status and audit.
demo: $(STAMP)
	@set -e; ws=$$(mktemp -d); cd $$ws; \
	$(CURDIR)/$(VENV)/bin/llctl init; \
	$(CURDIR)/$(VENV)/bin/llctl stop-training --reason "demo: the big red button"; \
	$(CURDIR)/$(VENV)/bin/llctl status; \
	$(CURDIR)/$(VENV)/bin/llctl resume --reason "demo: all clear"; \
	$(CURDIR)/$(VENV)/bin/llctl audit; \
	echo "workspace: $$ws"

# The whole suite: lint, unit/ops/cli/e2e tests (PostgreSQL ones when LLCTL_TEST_POSTGRES_URL is
# set), then the alibi-detect backend agreement tests in their own venv.
test: $(STAMP)
	$(VENV)/bin/ruff check lifelong_cli tests benchmarks
	$(PY) -m pytest -q $(PYTEST_ARGS)
	test ! -f mk/alibi.mk || $(MAKE) test-alibi

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check lifelong_cli tests benchmarks

-include mk/alibi.mk
