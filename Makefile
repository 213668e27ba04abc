# The two commands: `make run` (everything on one laptop) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test venv lint clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

# Laptop mode: SQLite, the embedded Celery broker, emails as files in sent_emails/, sandbox Recurrente.
run: export DEBUG ?= True
run: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	@echo ""
	@echo "  WebMagic is starting (Ctrl-C stops everything):"
	@echo "    Site:          http://localhost:8000/"
	@echo "    Staff admin:   http://localhost:8000/admin/   (login printed above)"
	@echo "    Funnel:        http://localhost:8000/admin/funnel/"
	@echo "    Portal:        http://localhost:8000/portal/"
	@echo "    Emails:        written to ./sent_emails/"
	@echo "    (SANDBOX_WEBHOOKS=False make run: no webhooks, as on Recurrente test keys)"
	@echo ""
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start --port 8000 web worker beat

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .celery-broker sent_emails staticfiles
