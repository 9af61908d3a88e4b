# Two entry points for a new machine (Debian, Python 3.11): `make demo` and `make test`.
# Each creates or updates the virtual environment itself.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# pytest-xdist workers: one per core (`auto`; 0 = one process); tests sharing a module-scoped fixture
# stay on one worker (tests/conftest.py).
PYTEST_WORKERS ?= auto
PYTEST_XDIST := -n $(PYTEST_WORKERS) --dist loadgroup

.PHONY: demo test test-fast lint venv clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[postgres,dev]'
	$(PY) -m compileall -q lifelong_cli
	touch $(STAMP)

# The main job: `llctl demo` — a stream, canaries under simulated traffic, a broken upstream, its
# detection, the bad-data playbook, recovery and a postmortem draft (about a minute).
demo: $(STAMP)
	$(VENV)/bin/llctl demo

# The whole suite: lint, unit/ops/cli/e2e tests (PostgreSQL ones when LLCTL_TEST_POSTGRES_URL is
# set), then the alibi-detect backend agreement tests in their own venv.
test: $(STAMP)
	$(VENV)/bin/ruff check lifelong_cli tests benchmarks
	$(PY) -m pytest -q $(PYTEST_XDIST) $(PYTEST_ARGS)
	test ! -f mk/alibi.mk || $(MAKE) test-alibi

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" $(PYTEST_XDIST) $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check lifelong_cli tests benchmarks

-include mk/alibi.mk
