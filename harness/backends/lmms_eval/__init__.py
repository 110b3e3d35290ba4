"""Our adapters and pruners as lmms-eval models (``--model harness_<family>``), see plugin.py."""
