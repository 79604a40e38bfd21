# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install browser run readers lint test test-fast bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

# The optional extras (MLflow, ONNX) are tested too; `make run` does without them.
$(VENV)/.extras: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[test,mlflow,onnx]'
	touch $@

# The review page's test opens it in a real browser: Debian's chromium, driven by playwright.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; }

run: install
	$(PY) jobs/compare.py $(ARGS)

# The readers shipped in hdr_dist/weights/, trained again from the embedded MNIST with their recorded
# settings (hdr_dist/models/shipped.py): both at once, one core each.
readers: install
	$(VENV)/bin/hdr models --train $(ARGS)

# ruff's formatter and linter, configured in pyproject.toml (docs/architecture.md says why these rules).
lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

test: install browser $(VENV)/.extras
	$(PY) -m pytest $(PYTEST_ARGS)

# The unit tests alone (no Ray, no cluster, no browser): a few minutes, for the edit-test loop.
test-fast: install $(VENV)/.extras
	$(PY) -m pytest -m "not ray and not cluster and not browser" $(PYTEST_ARGS)

bench: install
	$(PY) benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) results .pytest_cache
