# Two entry points: `make demo` and `make test`. Both create or refresh .venv first, installing
# exactly the versions in the committed lock (requirements.txt, made by `make lock`, which also
# exports it as pylock.toml, the PEP 751 format, for uv and pip users).
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
# The lock pins torch==2.14.1 / torchvision==0.29.1, the build this machine has on disk. On
# another platform resolve afresh instead: `make test LOCK= HLOCK= TORCH_SPEC="torch torchvision"`.
LOCK   ?= requirements.txt
HLOCK  ?= requirements/lock-habitat.txt
OLOCK  ?= requirements/lock-oldest.txt
TORCH_SPEC ?=
STAMP  := $(VENV)/.installed
PIP    := $(BIN)/python -m pip --disable-pip-version-check
constrain = $(if $(1),-c $(1))

.PHONY: demo test lint format venv venv-habitat clean chromium lock test-latest test-oldest

venv: $(STAMP)

$(STAMP): pyproject.toml setup.py $(wildcard $(LOCK))
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade $(call constrain,$(LOCK)) pip setuptools wheel
	$(PIP) install -q $(call constrain,$(LOCK)) -e '.[dev]' $(TORCH_SPEC)
	@touch $(STAMP)

# habitat-lab pins numpy==1.26.4 (the main venv has numpy 2), so its tests run in a second venv.
# habitat-sim has no wheel here: tests/habitat put stand-ins for its compiled modules in place.
HVENV  ?= .venv-habitat
HBIN   := $(HVENV)/bin
HSTAMP := $(HVENV)/.installed
HPIP   := $(HBIN)/python -m pip --disable-pip-version-check
# used only when HLOCK is empty (resolving afresh); the lock pins the same three
HABITAT_SPEC ?= habitat-lab==0.3.320260507 numpy==1.26.4 'pyarrow<26'

venv-habitat: $(HSTAMP)

$(HSTAMP): pyproject.toml setup.py $(wildcard $(HLOCK))
	@test -x $(HBIN)/python || $(PYTHON) -m venv $(HVENV)
	$(HPIP) install -q --upgrade $(call constrain,$(HLOCK)) pip setuptools wheel
	$(HPIP) install -q $(call constrain,$(HLOCK)) -e '.[dev]' $(TORCH_SPEC) \
		$(if $(HLOCK),habitat-lab,$(HABITAT_SPEC))
	@touch $(HSTAMP)

demo: $(STAMP)
	$(BIN)/eqarm demo --out outputs/demo

lint: $(STAMP)
	$(BIN)/ruff check habitat_eqarm tests benchmarks
	$(BIN)/ruff format --check habitat_eqarm tests benchmarks

format: $(STAMP)
	$(BIN)/ruff check --fix habitat_eqarm tests benchmarks
	$(BIN)/ruff format habitat_eqarm tests benchmarks

# Lint, the main suite and the habitat suite always all run; each is reported, and the exit
# status is non-zero when any of them failed.
test: chromium $(STAMP) $(HSTAMP)
	@lint=0; main=0; hab=0; \
	$(MAKE) --no-print-directory lint || lint=1; \
	$(BIN)/python -m pytest -q --durations=15 --ignore=tests/habitat || main=$$?; \
	$(HBIN)/python -m pytest -q tests/habitat || hab=$$?; \
	say() { [ "$$1" = 0 ] && echo ok || echo "FAILED (exit $$1)"; }; \
	echo "make test: lint $$(say $$lint); main suite $$(say $$main); habitat suite $$(say $$hab)"; \
	[ $$lint = 0 ] && [ $$main = 0 ] && [ $$hab = 0 ]

# Regenerate the three locks from pyproject.toml and requirements/*.in with uv (one universal
# resolution per lock: every platform marker kept, Python >= 3.11). Commit what changes.
lock: $(STAMP)
	$(PIP) install -q $(call constrain,$(LOCK)) uv
	$(BIN)/uv pip compile -q --universal --python-version 3.11 --extra dev \
		pyproject.toml requirements/lock.in -o requirements.txt
	$(BIN)/uv pip compile -q --universal --python-version 3.11 --format pylock.toml \
		requirements.txt -o pylock.toml
	$(BIN)/uv pip compile -q --universal --python-version 3.11 --extra dev \
		pyproject.toml requirements/lock-habitat.in -o requirements/lock-habitat.txt
	$(BIN)/uv pip compile -q --universal --python-version 3.11 --extra dev \
		--resolution lowest-direct pyproject.toml requirements/lock-oldest.in \
		-o requirements/lock-oldest.txt

# Not in CI. The newest releases of everything (within pyproject.toml's ranges), in a venv of
# their own; the versions it ran with are written to .venv-latest/versions.txt.
test-latest:
	rm -rf .venv-latest && $(PYTHON) -m venv .venv-latest
	.venv-latest/bin/python -m pip install -q --upgrade pip
	.venv-latest/bin/python -m pip install -q --upgrade --upgrade-strategy eager \
		-e '.[dev]' $(TORCH_SPEC)
	.venv-latest/bin/python -m pip freeze --exclude-editable > .venv-latest/versions.txt
	.venv-latest/bin/python -m pytest -q --ignore=tests/habitat

# Not in CI. Every direct dependency at its lower bound (requirements/lock-oldest.txt).
test-oldest:
	rm -rf .venv-oldest && $(PYTHON) -m venv .venv-oldest
	.venv-oldest/bin/python -m pip install -q --upgrade pip setuptools wheel
	.venv-oldest/bin/python -m pip install -q -c $(OLOCK) -e '.[dev]'
	.venv-oldest/bin/python -m pytest -q --ignore=tests/habitat

# The review page's browser test drives Debian's chromium (never `playwright install`).
chromium:
	@command -v chromium >/dev/null 2>&1 || { s=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$s apt-get update && $$s apt-get install -y chromium; }

clean:
	rm -rf $(VENV) $(HVENV) .venv-latest .venv-oldest build *.egg-info .pytest_cache .ruff_cache
