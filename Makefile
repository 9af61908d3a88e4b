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

# The main job. For now: a fresh workspace and a synthetic stream whose third batch comes from a
# broken upstream: ingest and train, see the drift, stop training, purge the bad batch, resume,
# train (nothing clean is new), versions, status and the audit.
demo: $(STAMP)
	@set -e; ws=$$(mktemp -d); L=$(CURDIR)/$(VENV)/bin/llctl; cd $$ws; \
	$$L init; \
	$(CURDIR)/$(PY) -m lifelong_cli.data.synthetic stream --batches 3 --rows 2000 --broken 3 >/dev/null; \
	$$L ingest stream/batch-01.csv --source crm; \
	$$L train --epochs 2; \
	$$L ingest stream/batch-02.csv --source crm; \
	$$L train --epochs 2; \
	$$L ingest stream/batch-03.csv --source crm; \
	$$L drift --batch 3 || true; \
	$$L stop-training --reason "demo: x1 arrives x100 from crm"; \
	$$L purge-data --batch 3 --reason "demo: broken upstream"; \
	$$L resume --reason "demo: bad batch purged"; \
	$$L train; \
	$$L versions; \
	$$L status; \
	$$L audit; \
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
