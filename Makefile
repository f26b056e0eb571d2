# Two entry points: `make demo` and `make test`. Both create or refresh .venv first.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
# The torch build this machine has on disk; override elsewhere, e.g. `make test TORCH_SPEC=torch`.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
STAMP  := $(VENV)/.installed
PIP    := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: demo test lint format venv venv-habitat clean chromium

venv: $(STAMP)

$(STAMP): pyproject.toml setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q $(TORCH_SPEC)
	$(PIP) install -q -e '.[dev]' $(TORCH_SPEC)
	@touch $(STAMP)

# habitat-lab pins numpy==1.26.4 (the main venv has numpy 2), so its tests run in a second venv.
# habitat-sim has no wheel here: tests/habitat put stand-ins for its compiled modules in place.
HVENV  ?= .venv-habitat
HBIN   := $(HVENV)/bin
HSTAMP := $(HVENV)/.installed
HPIP   := $(HBIN)/python -m pip --disable-pip-version-check
HABITAT_SPEC ?= habitat-lab==0.3.320260507 numpy==1.26.4 'pyarrow<26'

venv-habitat: $(HSTAMP)

$(HSTAMP): pyproject.toml setup.py
	@test -x $(HBIN)/python || $(PYTHON) -m venv $(HVENV)
	$(HPIP) install -q --upgrade pip setuptools wheel
	$(HPIP) install -q $(TORCH_SPEC)
	$(HPIP) install -q -e '.[dev]' $(TORCH_SPEC) $(HABITAT_SPEC)
	@touch $(HSTAMP)

demo: $(STAMP)
	$(BIN)/eqarm demo --out outputs/demo

lint: $(STAMP)
	$(BIN)/ruff check habitat_eqarm tests benchmarks
	$(BIN)/ruff format --check habitat_eqarm tests benchmarks

format: $(STAMP)
	$(BIN)/ruff check --fix habitat_eqarm tests benchmarks
	$(BIN)/ruff format habitat_eqarm tests benchmarks

test: lint chromium $(HSTAMP)
	$(BIN)/python -m pytest -q --ignore=tests/habitat
	$(HBIN)/python -m pytest -q tests/habitat

# The review page's browser test drives Debian's chromium (never `playwright install`).
chromium:
	@command -v chromium >/dev/null 2>&1 || { s=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$s apt-get update && $$s apt-get install -y chromium; }

clean:
	rm -rf $(VENV) $(HVENV) build *.egg-info .pytest_cache .ruff_cache
