# Set-up is idempotent: the virtualenv is built once (stamp file) and reused by `run` and `test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.stamp-installed
ARGS    ?=

.PHONY: run test install lint bench clean

run: $(STAMP)  ## start aifab on its embedded defaults
	$(BIN)/aifab up $(ARGS)

test: $(STAMP)  ## the whole test suite this machine can run
	$(BIN)/python -m pytest $(ARGS)

install: $(STAMP)

# torch first, CPU build, pinned: nothing installed later may swap it for a CUDA build.
$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel setuptools
	$(BIN)/pip install -q torch==2.13.0
	@echo "installing aifab and its dependencies (the first time this compiles llama-cpp-python: ~10 min on 2 cores)..."
	$(BIN)/pip install -q --no-deps xgrammar==0.2.8 apache-tvm-ffi==0.1.15.post2  # = aifab[structured] minus triton
	$(BIN)/pip install -q -e '.[dev,pg,train,otel]'
	$(BIN)/python -c "import torch; assert '+cpu' in torch.__version__ or not torch.cuda.is_available(), torch.__version__"
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy src

bench: $(STAMP)
	$(BIN)/python benchmarks/inference.py $(ARGS)

clean:
	rm -rf $(VENV) .aifab
