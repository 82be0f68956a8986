# Set-up is idempotent: the virtualenv is built once (stamp file) and reused by `run` and `test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.stamp-installed
TSTAMP  := $(VENV)/.stamp-test
ARGS    ?=

.PHONY: run test install lint bench clean constraints

run: $(STAMP)  ## start aifab on its embedded defaults
	$(BIN)/aifab up $(ARGS)

# As root it installs pgvector itself (as .ci/run does); otherwise, or if that fails, pgvector's tests are
# skipped with the command that installs it. AIFAB_TEST_REQUIRE=all (CI) makes any such skip a failure.
test: $(TSTAMP)  ## the whole test suite this machine can run
	@if [ "$$(id -u)" = 0 ] && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  .ci/install-pgvector.sh || echo "pgvector could not be installed: its tests will be skipped"; fi
	$(BIN)/python -m pytest --durations=25 $(ARGS)  # the slowest tests, to keep the run short

install: $(STAMP)

# The tested set of every dependency (Linux x86-64, Python 3.11): installs take exactly these versions.
# pyproject.toml keeps lower bounds only, for people who use aifab as a library. Refresh: `make constraints`.
CONSTRAINTS := constraints.txt
EXTRAS      := dev,pg,train,otel
# what only the tests need on top: Ray (distributed training and serving tests)
TEST_EXTRAS := ray

# torch first, CPU build, pinned: nothing installed later may swap it for a CUDA build.
$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel setuptools
	$(BIN)/pip install -q torch==2.13.0
	@echo "installing aifab and its dependencies (the first time this compiles llama-cpp-python: ~10 min on 2 cores)..."
	$(BIN)/pip install -q --no-deps xgrammar==0.2.8 apache-tvm-ffi==0.1.15.post2  # = aifab[structured] minus triton
	$(BIN)/pip install -q -c $(CONSTRAINTS) -e '.[$(EXTRAS)]'
	$(BIN)/python -c "import torch; assert '+cpu' in torch.__version__ or not torch.cuda.is_available(), torch.__version__"
	touch $(STAMP)

$(TSTAMP): $(STAMP)
	$(BIN)/pip install -q -c $(CONSTRAINTS) -e '.[$(EXTRAS),$(TEST_EXTRAS)]'
	touch $(TSTAMP)

# Resolve the newest versions pyproject.toml allows in a scratch virtualenv and write them as the new
# tested set; then run `make test` on it before committing constraints.txt.
constraints:
	rm -rf .venv-constraints && $(PY) -m venv .venv-constraints
	.venv-constraints/bin/pip install -q --upgrade pip wheel setuptools
	.venv-constraints/bin/pip install -q torch==2.13.0
	.venv-constraints/bin/pip install -q --no-deps xgrammar==0.2.8 apache-tvm-ffi==0.1.15.post2
	.venv-constraints/bin/pip install -q -e '.[$(EXTRAS),$(TEST_EXTRAS)]'
	{ echo "# The tested set of aifab's dependencies (Linux x86-64, CPython 3.11), used as pip install -c $(CONSTRAINTS)."; \
	  echo "# Written by 'make constraints' (the newest versions pyproject.toml allows); a new dependency may be added by hand, pinned to the version it was tested with."; \
	  .venv-constraints/bin/pip freeze --exclude-editable | grep -v '^aifab'; } > $(CONSTRAINTS)
	rm -rf .venv-constraints

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy src
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python benchmarks/inference.py $(ARGS)

clean:
	rm -rf $(VENV) .aifab
