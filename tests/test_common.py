import numpy as np

from harness.models.common import StageTimer, peak_rss_mb


def test_stage_timer_accumulates_per_stage():
    timer = StageTimer()
    for _ in range(2):
        with timer.stage("prefill"):
            sum(range(10000))
    assert set(timer.seconds) == {"prefill"} and timer.seconds["prefill"] > 0


def test_peak_rss_grows_with_a_large_allocation():
    before = peak_rss_mb()
    block = np.ones(64 * 1024 * 1024, dtype=np.uint8)  # 64 MiB, touched
    assert block.sum() > 0
    assert peak_rss_mb() >= before + 48
