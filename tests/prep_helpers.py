"""What the prep test files share: run `imgkit prep` and read what it wrote."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from click.testing import CliRunner

from imgkit.commands import cli


def run(*argv):
    """Invoke `imgkit prep ARGV...` through click's CliRunner."""
    return CliRunner().invoke(cli, ["prep", *(str(a) for a in argv)])


def ok(*argv):
    """Like :func:`run`, asserting success."""
    result = run(*argv)
    assert result.exit_code == 0, result.output
    return result


def manifest(folder) -> pd.DataFrame:
    return pd.read_csv(Path(folder) / "manifest.csv", dtype=str, keep_default_na=False)


def rejects(folder, basename: bool = True) -> dict[str, str]:
    """rejects.csv as {path: reason}, keyed by file name unless ``basename`` is False."""
    table = pd.read_csv(Path(folder) / "rejects.csv", dtype=str, keep_default_na=False)
    keys = [os.path.basename(p) for p in table["path"]] if basename else table["path"]
    return dict(zip(keys, table["reason"], strict=True))
