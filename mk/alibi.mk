# The alibi-detect drift backend's agreement tests, in a venv of their own.
#
# alibi-detect pins numpy<2 (and is heavy: transformers, opencv, scikit-image, numba), so it cannot
# live in .venv. Included from the Makefile; also runs alone: `make -f mk/alibi.mk test-alibi`.
# Everything here is prefixed ALIBI_ so that it cannot clash with the including Makefile.
#
# The whole project is installed with its [alibi,dev] extras (pyproject.toml pins torch==2.13.0, the
# CPU wheel; never install torch unpinned: a plain `torch` pulls a multi-GB CUDA build).
ALIBI_PYTHON ?= python3.11
ALIBI_VENV ?= .venv-alibi
ALIBI_PY := $(ALIBI_VENV)/bin/python
ALIBI_STAMP := $(ALIBI_VENV)/.installed-stamp
ALIBI_PYTEST_ARGS ?=

.PHONY: test-alibi venv-alibi clean-venv-alibi

venv-alibi: $(ALIBI_STAMP)

$(ALIBI_STAMP): pyproject.toml
	test -x $(ALIBI_PY) || $(ALIBI_PYTHON) -m venv $(ALIBI_VENV)
	$(ALIBI_PY) -m pip install -q --upgrade pip
	$(ALIBI_PY) -m pip install -q -e '.[alibi,dev]'
	touch $(ALIBI_STAMP)

test-alibi: $(ALIBI_STAMP)
	$(ALIBI_PY) -m pytest -q -m alibi $(ALIBI_PYTEST_ARGS) tests/unit/test_drift_alibi.py

clean-venv-alibi:
	rm -rf $(ALIBI_VENV)
