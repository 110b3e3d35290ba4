"""Config -> samples -> one JSONL record per sample per run; resumable, shardable (torchrun/accelerate).

    from harness.runner import load_config, Evaluator
    cfg = load_config("configs/demo.yaml", overrides=["benchmark.limit=2"])
    result = Evaluator(cfg).run()
"""

from harness.runner.config import ConfigError, EvalConfig, load_config, validate_names
from harness.runner.engine import EvalResult, Evaluator

__all__ = ["ConfigError", "EvalConfig", "EvalResult", "Evaluator", "load_config", "validate_names"]
