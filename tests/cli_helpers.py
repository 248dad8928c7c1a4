"""Running imgkit through click's CliRunner, and checking its one-line errors."""

from __future__ import annotations

from click.testing import CliRunner

from imgkit.commands import cli


def invoke(*args):
    """Run ``imgkit ARGS`` in this process (paths may be Path objects)."""
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line_error(result, *fragments):
    """Exit 1, no traceback, and one stderr line holding every fragment."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
