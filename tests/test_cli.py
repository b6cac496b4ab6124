"""The command line itself: instant help, clean errors."""

import subprocess
import sys


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "alexnet", *args], capture_output=True, text=True, timeout=timeout)


def test_help_is_instant_and_imports_no_torch():
    # "Instant" is checked by what is imported, not by a time: the machine is shared and noisy.
    code = "import sys; from alexnet.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_help_lists_commands():
    result = run_cli("--help")
    assert result.returncode == 0
    assert "usage: alexnet" in result.stdout


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("alexnet ")


def test_unknown_command_fails():
    result = run_cli("no-such-command")
    assert result.returncode != 0
    assert "invalid choice" in result.stderr


def test_closed_pipe_exits_quietly():
    # `alexnet summary alexnet | head`: the reader leaves early (here `true` leaves before a byte is written, as
    # head does on long outputs); no BrokenPipeError traceback.
    result = subprocess.run(
        f"'{sys.executable}' -m alexnet summary alexnet | true", shell=True, capture_output=True, text=True,
        timeout=120,
    )
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr
