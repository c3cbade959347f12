# Zhihui: two commands matter.
#   make run   installs what is needed and starts Zhihui on its embedded defaults (with demo users)
#   make test  installs what is needed (Chromium included) and runs the whole test suite

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test install bench clean

$(STAMP): pyproject.toml setup.py $(wildcard media_relay/forwarding/*.[ch])
	scripts/install-system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/zhihui up --demo

test: $(STAMP)
	scripts/install-system-deps --browser
	$(BIN)/ruff check .
	$(BIN)/mypy dispatch_server media_relay field_client zhihui
	$(BIN)/python -m pytest --durations=15

bench: $(STAMP)
	$(BIN)/python bench/relay_load.py

clean:
	rm -rf $(VENV) var .pytest_cache build media_relay/forwarding/*.so
