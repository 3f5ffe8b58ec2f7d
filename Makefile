# The two set-up commands of the README: `make demo` runs the main job, `make test` the test suite.
# Both create .venv and install the project into it on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test bench install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'

demo: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	$(BIN)/safegene demo

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python benchmarks/transforms.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .hypothesis
