# The two commands: `make run` (the main job) and `make test` (everything CI runs).
# Both set up a fresh machine first: a Python 3.11 venv in .venv and Kafka's jars from Maven Central.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup run test unit lint bench kafka-stop clean

$(BIN)/fedrift: pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements.lock -e '.[dev]'
	touch $@

infra/kafka/lib/.resolved: infra/kafka/pom.xml
	mvn -q -B -f infra/kafka/pom.xml dependency:copy-dependencies
	touch $@

setup: $(BIN)/fedrift infra/kafka/lib/.resolved

run: setup
	$(BIN)/fedrift run $(ARGS)

test: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -m alone
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest tests/unit fedrift schemas streams agents

bench: setup
	$(BIN)/python -m benchmarks.zoo --jobs 2
	$(BIN)/python -m benchmarks.quality --jobs 2
	$(BIN)/python -m benchmarks.agreement
	$(BIN)/python -m benchmarks.privacy_utility --jobs 2
	$(BIN)/python -m benchmarks.privacy_utility --jobs 2 --noise local
	$(BIN)/python -m benchmarks.drift_detection
	$(BIN)/python -m benchmarks.pipeline_throughput
	$(BIN)/python -m benchmarks.soak
	$(BIN)/python -m benchmarks.tables

kafka-stop:
	-$(BIN)/fedrift kafka stop
	-$(BIN)/fedrift kafka stop --plaintext

clean: kafka-stop
	rm -rf .fedrift infra/kafka/lib infra/kafka/target
