# The two commands: `make run` (everything on one laptop) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test venv lint clean lock

venv: $(STAMP)

# Installs exactly the locked versions, each checked against its hash (pip itself included: the
# lock pins it). The locks are compiled from requirements.in and requirements-dev.in by `make lock`.
$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

# Recompile the locks after editing a .in file. Pins already in the locks are kept; to move every
# transitive package to its newest allowed version: `make lock LOCK_ARGS=--upgrade` (or
# `LOCK_ARGS="--upgrade-package sqlparse"` for one). The runtime lock comes first: the dev lock is
# constrained by it. No index URLs in the files, so they install from any PyPI mirror.
LOCK := CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe \
	--strip-extras --no-emit-index-url --no-emit-find-links $(LOCK_ARGS)
lock: $(STAMP)
	$(LOCK) --output-file requirements.txt requirements.in
	$(LOCK) --output-file requirements-dev.txt requirements-dev.in

# Laptop mode: SQLite, the embedded Celery broker, emails as files in sent_emails/, sandbox Recurrente.
# `make run PORT=8010` serves on another port. Links in emails, Recurrente's return URLs and the
# sandbox's webhook deliveries are built from SITE_URL, so it follows PORT unless SITE_URL is set
# in the environment or in .env (a tunnel's public address, say).
run: PORT ?= 8000
run: export DEBUG ?= True
ifeq ($(shell grep -sE '^[[:space:]]*(export[[:space:]]+)?SITE_URL[[:space:]]*=' .env),)
run: export SITE_URL ?= http://localhost:$(PORT)
endif
run: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	@echo ""
	@echo "  WebMagic is starting (Ctrl-C stops everything):"
	@echo "    Site:          http://localhost:$(PORT)/"
	@echo "    Staff admin:   http://localhost:$(PORT)/admin/   (login printed above)"
	@echo "    Funnel:        http://localhost:$(PORT)/admin/funnel/"
	@echo "    Portal:        http://localhost:$(PORT)/portal/"
	@echo "    Sent emails:   http://localhost:$(PORT)/admin/sent-emails/   (files in ./sent_emails/)"
	@echo "    (SANDBOX_WEBHOOKS=False make run: no webhooks, as on Recurrente test keys)"
	@echo ""
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start --port $(PORT) web worker beat

test: $(STAMP)
	$(BIN)/python -m pytest

# Style, the import contracts between apps (.importlinter), and types (mypy.ini).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	DEBUG=True $(BIN)/mypy

clean:
	rm -rf $(VENV) .celery-broker sent_emails staticfiles
