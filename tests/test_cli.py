"""The command group as a whole: help for every command, exit codes, no TF on --help."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from imgkit.commands import COMMANDS, cli


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help_with_an_example(name):
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output


def test_group_help_lists_every_command():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


@pytest.mark.parametrize("argv", [["--help"], *[[name, "--help"] for name in sorted(COMMANDS)]])
def test_help_does_not_import_tensorflow(argv):
    code = (
        "import sys\n"
        "from imgkit.commands import main\n"
        f"rc = main({argv!r})\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'jax', 'torch') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_unknown_command_is_a_usage_error():
    result = CliRunner().invoke(cli, ["nosuchcommand"])
    assert result.exit_code == 2


def test_library_error_is_one_line_and_exit_1(tmp_path):
    result = CliRunner().invoke(
        cli,
        ["train", str(tmp_path / "missing"), "-o", str(tmp_path / "run"), "--model", "fashion-cnn"],
    )
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "missing" in result.output


def test_console_script_pipes_quietly_into_head(tmp_path):
    """A closed pipe (``imgkit ... | head``) ends quietly, with no traceback."""
    proc = subprocess.run(
        f"{sys.executable} -m imgkit --help | head -n 1",
        shell=True,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0
    assert "Traceback" not in proc.stderr
