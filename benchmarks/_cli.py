"""Running imgkit commands in-process from the benchmark scripts, timed."""

from __future__ import annotations

import sys
import time


def imgkit(*args) -> float:
    """Run one imgkit command in-process (arguments made strings); its wall-clock seconds.

    A failed command ends the benchmark with its output: a figure from a run that did
    not finish would mean nothing.
    """
    from click.testing import CliRunner

    from imgkit.commands import cli

    t0 = time.perf_counter()
    result = CliRunner().invoke(cli, [str(a) for a in args])
    if result.exit_code != 0:
        sys.exit(f"imgkit {' '.join(map(str, args))} failed:\n{result.output}")
    return time.perf_counter() - t0
