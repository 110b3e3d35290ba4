import subprocess
import sys

from harness.cli.main import SUBCOMMANDS, main


def test_help_lists_every_subcommand(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in out


def test_unknown_subcommand_is_an_error(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown subcommand 'frobnicate'" in capsys.readouterr().err


def test_run_eval_script_runs():
    proc = subprocess.run([sys.executable, "run_eval.py", "--help"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and "score" in proc.stdout
