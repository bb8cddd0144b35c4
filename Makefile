# Two commands a user needs:  `make sweep`  and  `make test`.
# The first Python 3.11, 3.12 or 3.13 found (a pyenv shim that cannot run counts as not found).
SUPPORTED := python3.11 python3.12 python3.13 python3
PYTHON ?= $(shell for p in $(SUPPORTED); do $$p -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))' >/dev/null 2>&1 && { echo $$p; break; }; done)
VENV   ?= .venv
BIN    := $(VENV)/bin
ARGS   ?=

.PHONY: setup sweep test test-fast test-torch browser clean

$(BIN)/ktsweep: pyproject.toml constraints.txt
	@[ -n "$(PYTHON)" ] && command -v $(PYTHON) >/dev/null || { echo "make: no Python 3.11, 3.12 or 3.13 found (looked for $(SUPPORTED)); install one, or run make PYTHON=/path/to/python3.X"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test,jax]"
	@touch $@

setup: $(BIN)/ktsweep   ## virtual env with the pinned dependencies

sweep: setup            ## run the default sweep (digits, local Ray, local MLflow)
	$(BIN)/ktsweep run $(ARGS)

test: setup browser     ## the whole test suite, slow tests included; then the per-backend paths again on JAX
	$(BIN)/python -m pytest $(ARGS)
	KERAS_BACKEND=jax $(BIN)/python -m pytest -m backend $(ARGS)

browser:                ## Debian's Chromium for the report's rendering test (skipped if it cannot be installed)
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && { DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1; }; }; } || \
	  echo "make: chromium not installed; the browser test will be skipped"

test-fast: setup        ## skip the slow tests
	$(BIN)/python -m pytest -m "not slow" $(ARGS)

test-torch: setup       ## PyTorch (installed here, ~0.9 GB): the per-backend paths and the backend tests on it
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test,jax,torch]"
	KTSWEEP_OTHER_BACKENDS=torch $(BIN)/python -m pytest tests/test_backends.py $(ARGS)
	KERAS_BACKEND=torch $(BIN)/python -m pytest -m backend $(ARGS)

clean:
	rm -rf $(VENV) ktsweep-runs build *.egg-info
