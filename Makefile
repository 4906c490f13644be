# The two commands a newcomer needs: `make demo` (the main job) and `make test`.
# Both install what they need: a virtualenv in .venv and the Apache Kafka jars in .cache/kafka.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install jars test lint format demo broker-start broker-stop broker-status clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) jars

jars: $(STAMP)
	$(BIN)/devbroker fetch

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

# mypy checks the packages, bench/ and tests/ ([tool.mypy] in pyproject.toml)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

demo: install
	$(BIN)/fraud-detector demo

broker-start: install
	$(BIN)/devbroker start

broker-stop: $(STAMP)
	$(BIN)/devbroker stop

# devbroker status exits 3 when no broker runs: a normal answer, not a make failure.
broker-status: $(STAMP)
	$(BIN)/devbroker status || test $$? -eq 3

clean:
	rm -rf $(VENV) .cache build *.egg-info
