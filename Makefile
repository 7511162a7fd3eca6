# Parley: `make run` to serve, `make test` to check everything.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
HOST ?= 127.0.0.1
PORT ?= 8000
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run setup test test-fast lint typecheck bench vendor messages messages-update lock outdated clean help

# Every target with a "##" comment is listed by `make help`.
help: ## list the targets
	@grep -E '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)/  make \1\t\2/' | expand -t 24

$(PY):
	$(PYTHON) -m venv $(VENV)

# Installs are stamped by the pin file they came from, so a second `make run` is quick.
$(VENV)/.installed-run: requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@ $(VENV)/.installed-run

# The optional local model (llama.cpp's server and SmolLM2-135M, docs/local-models.md). The
# tests always need it; `make run` installs it only when no provider is configured. llama.cpp
# is compiled once (about 8 minutes) into LOCAL_WHEELS, outside the checkout, so clones reuse it.
LOCAL_WHEELS ?= $(HOME)/.cache/parley/wheels
$(VENV)/.installed-local: requirements.txt requirements-local.txt | $(PY)
	$(PY) -m chat.local.install --wheels $(LOCAL_WHEELS)
	@touch $@

# The OpenID Connect provider the sign-in tests start (npm's oidc-provider under node, pinned by
# its package-lock.json): tests/accounts/idp.py.
TEST_IDP := tests/accounts/oidc_provider
$(TEST_IDP)/node_modules/.installed: $(TEST_IDP)/package.json $(TEST_IDP)/package-lock.json
	cd $(TEST_IDP) && npm ci --no-audit --no-fund --silent
	@touch $@

messages: $(VENV)/.installed-run ## compile the translations (locale/*/LC_MESSAGES/*.mo)
	$(PY) manage.py compilemessages --ignore=.venv --ignore=node_modules -v 0

# Re-extract every translatable string into locale/zh_Hans/LC_MESSAGES/django.po, keeping the
# translations already made; then translate the new entries (empty msgstr or "fuzzy").
# tests/accounts/test_i18n.py fails while any entry is untranslated.
MESSAGE_IGNORES := --ignore=.venv --ignore=node_modules --ignore=static/vendor --ignore=data \
	--ignore=tests --ignore=bench --ignore=test-artifacts
messages-update: $(VENV)/.installed-run ## re-extract translatable strings into locale/zh_Hans (then translate them)
	$(PY) manage.py makemessages -l zh_Hans $(MESSAGE_IGNORES) --no-obsolete --add-location=file -v 0

setup: $(VENV)/.installed-run messages ## install, migrate, collect static files and create the first admin, without serving
	$(PY) manage.py migrate --noinput -v 0
	$(PY) manage.py setup_providers
	$(PY) manage.py collectstatic --noinput -v 0
	$(PY) manage.py ensure_admin

run: setup ## set up everything and serve Parley at http://$(HOST):$(PORT)
	$(PY) manage.py local_model --ensure-installed --wheels $(LOCAL_WHEELS)
	$(PY) manage.py serve --host $(HOST) --port $(PORT)

lint: $(VENV)/.installed-dev ## ruff: lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-dev ## mypy (with django-stubs) over the upstream, core and services layers
	$(BIN)/mypy

# The whole suite on the embedded defaults (SQLite, in-memory layer), then again on
# PostgreSQL and Redis when those servers answer (they do on this project's machines and CI).
# The multiprocess tests (tests/deploy) run once, in the first run: they always use
# PostgreSQL and Redis, in a database and a Redis index of their own.
test: $(VENV)/.installed-dev $(VENV)/.installed-local $(TEST_IDP)/node_modules/.installed messages ## linters, the type check and the whole suite (SQLite, then PostgreSQL and Redis)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(PY) manage.py collectstatic --noinput -v 0
	$(BIN)/pytest
	@if $(PY) -m tests.services_up; then \
		echo "== again on PostgreSQL and Redis =="; \
		DATABASE_URL=postgres://postgres@127.0.0.1:5432/test REDIS_URL=redis://127.0.0.1:6379/0 \
			$(BIN)/pytest -m "not browser and not local_model and not multiprocess"; \
	else echo "PostgreSQL or Redis not reachable: skipped the team-deployment run"; fi

test-fast: $(VENV)/.installed-dev $(TEST_IDP)/node_modules/.installed ## the suite on SQLite without browser, local-model and multiprocess tests
	$(BIN)/pytest -x -q -m "not browser and not local_model and not multiprocess"

# Benchmarks start their own servers on temporary data folders and databases (bench/harness.py),
# so they need the compiled translations but not `setup`. BENCH_ARGS="--quick" tries them fast.
# Start-up and memory are measured on a production install (requirements.txt only, as in the
# Docker image): the checkout's .venv also holds the test tools, which httpx imports if present.
PROD_VENV := $(VENV)-prod
$(PROD_VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(PROD_VENV)
	$(PROD_VENV)/bin/python -m pip install --quiet -r requirements.txt
	@touch $@

bench: $(VENV)/.installed-dev $(PROD_VENV)/.installed messages ## benchmarks, written to docs/performance.md (BENCH_ARGS="--quick" for a fast try)
	$(PY) -m bench.run $(BENCH_ARGS)

# Copies pinned browser libraries from npm into static/vendor (see static/vendor/VERSIONS.md).
vendor: ## copy the pinned browser libraries from npm into static/vendor
	npm ci --no-audit --no-fund
	node scripts/vendor.mjs

lock: ## regenerate requirements.txt from pyproject.toml
	$(PYTHON) -m venv /tmp/parley-lock && /tmp/parley-lock/bin/pip install -q -e '.' && \
		/tmp/parley-lock/bin/pip freeze --exclude-editable > requirements.txt

# Vulnerability databases are not reachable from the project's machines: security releases are
# taken by keeping the pins current. Lists every pin with a newer release (asks PyPI through pip).
outdated: $(VENV)/.installed-run ## list pinned packages (requirements*.txt) with newer releases on PyPI
	$(PY) -m scripts.outdated

clean: ## remove the virtual environments and collected static files
	rm -rf $(VENV) $(PROD_VENV) data/staticfiles
