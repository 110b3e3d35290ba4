import subprocess
import sys

from harness.models.common import StageTimer


def test_stage_timer_accumulates_per_stage():
    timer = StageTimer()
    for _ in range(2):
        with timer.stage("prefill"):
            sum(range(10000))
    assert set(timer.seconds) == {"prefill"} and timer.seconds["prefill"] > 0


def test_peak_rss_is_the_process_own_and_grows_with_an_allocation():
    """In a fresh process (so earlier tests' peaks don't hide the growth) a 256 MiB block shows up."""
    code = (
        "import numpy as np\n"
        "from harness.models.common import peak_rss_mb\n"
        "before = peak_rss_mb()\n"
        "block = np.ones(256 * 1024 * 1024, dtype=np.uint8)\n"
        "print(before, peak_rss_mb(), int(block[-1]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    before, after, _ = (float(x) for x in out.split())
    assert after >= before + 200
