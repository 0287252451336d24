# framefarm — `make demo` runs a whole farm here; `make test` runs the test suite.
# Both install what they need: apt packages when missing, then a virtualenv in .venv.

SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# ffmpeg for video, blender for the executable backend, the X/GL libraries the bpy wheel
# links against, python3-venv for the virtualenv, postgresql for the scheduler tests,
# chromium for the web page tests, tmux for the runner console tests.
APT_PACKAGES := ffmpeg blender python3-venv libx11-6 libxrender1 libxfixes3 libxi6 \
	libxkbcommon0 libsm6 libice6 libgl1 libxext6 libxxf86vm1 postgresql chromium tmux
# The test suite runs the scheduler and API tests on a real PostgreSQL server too.
PG_RUN := $(if $(SUDO),sudo -u postgres,runuser -u postgres --)
export FRAMEFARM_TEST_POSTGRES_URL ?= postgresql+psycopg://framefarm_test:framefarm_test@127.0.0.1:5432/postgres
PYTHON := $(shell command -v python3.11 || command -v python3)

.PHONY: setup system-deps venv postgres test demo lint addon clean

setup: system-deps venv

system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "installing with apt: $$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
		{ echo "framefarm needs Python 3.11 (the bpy==5.0.1 wheel exists only for 3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[bpy,dev]"
	touch $@

postgres: system-deps
	@pg_lsclusters -h | awk '$$4 == "online" {found=1} END {exit !found}' || \
		$(SUDO) pg_ctlcluster $$(pg_lsclusters -h | awk 'NR==1 {print $$1}') main start
	@$(PG_RUN) psql -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'framefarm_test'" | grep -q 1 || \
		$(PG_RUN) psql -qc "CREATE ROLE framefarm_test LOGIN CREATEDB PASSWORD 'framefarm_test'"

test: setup postgres
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy manager runner shared framefarm
	$(BIN)/pytest

demo: setup
	$(BIN)/framefarm demo

lint: venv
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy manager runner shared framefarm

# The virtualenv's pip downloads the wheels the extension bundles (from PyPI, cached in build/).
addon: venv
	$(BIN)/python build_addon.py

clean:
	rm -rf $(VENV) dist build framefarm-demo .pytest_cache .mypy_cache .ruff_cache
