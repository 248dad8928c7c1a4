"""A multi-worker run's bounded waits: for the other workers at start, and a peer lost later.

Starting ``MultiWorkerMirroredStrategy`` blocks until every task of ``TF_CONFIG`` has
connected, with no time limit: a worker that died (or never started) left the others
waiting forever, deaf even to SIGTERM (TensorFlow holds the interpreter lock in C++
the whole time, and its preemption handler takes SIGTERM). No Python thread can act
then, so :func:`bounded_start` arms :func:`faulthandler.dump_traceback_later`, a C
watchdog that ends the process with status 1 once the wait runs out. Its traceback
goes into a pipe to a small helper process, which prints the run's one line on stderr
instead. Once the workers run, TensorFlow's coordination service notices a worker that
stops sending heartbeats (10 s) and aborts the collective ops with ``UnavailableError``;
:func:`peer_lost` turns that into one line too.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import re
import subprocess
import sys
from collections.abc import Iterator

from imgkit.errors import ImgkitError

# How long a worker waits for the others to connect: long enough for a cluster's
# machines to start one after another, short enough that a dead one is noticed.
WAIT_ENV = "IMGKIT_WORKER_WAIT"
DEFAULT_WAIT = 300.0

# The helper: silent when the pipe closes unused (the workers connected, or the run
# ended); on the first byte of a traceback, the one line, then it drains the pipe so
# the dump never blocks on a full buffer. Ctrl-C is the run's to handle.
_SAY_ON_DUMP = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
if os.read(0, 1):
    os.write(2, (sys.argv[1] + "\\n").encode())
    while os.read(0, 65536):
        pass
"""


def wait_seconds() -> float:
    """The start-up wait: ``IMGKIT_WORKER_WAIT`` seconds, else 300.

    Raises:
        ImgkitError: the variable is not a positive number.
    """
    text = os.environ.get(WAIT_ENV, "").strip()
    if not text:
        return DEFAULT_WAIT
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0:
        raise ImgkitError(f"{WAIT_ENV}={text}: expected a number of seconds above 0")
    return seconds


@contextlib.contextmanager
def bounded_start(tasks: dict[str, list[str]], seconds: float) -> Iterator[None]:
    """Run the block (the strategy's start); past ``seconds``, one line and exit status 1."""
    names = ", ".join(f"{kind} {i} at {a}" for kind, addrs in tasks.items()
                      for i, a in enumerate(addrs))  # fmt: skip
    line = (
        f"Error: TF_CONFIG: the workers did not all connect within {seconds:g} s ({names}); "
        f"one has stopped or cannot be reached. Start every worker (or set {WAIT_ENV} "
        "to wait longer)"
    )
    read_end, write_end = os.pipe()
    try:
        helper = subprocess.Popen(
            [sys.executable, "-c", _SAY_ON_DUMP, line], stdin=read_end, stdout=subprocess.DEVNULL
        )
    finally:
        os.close(read_end)
    dump = os.fdopen(write_end, "w")
    faulthandler.dump_traceback_later(seconds, exit=True, file=dump)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
        dump.close()
        helper.wait()


_TASK = re.compile(r"/job:(\w+)/replica:\d+/task:(\d+)")


def peer_lost(error: BaseException, own: tuple[str, int]) -> ImgkitError | None:
    """One line for a worker lost mid-run (TensorFlow aborted the collectives), else None.

    ``own`` is this process's (task type, index): TensorFlow's message names its own
    device beside the lost task.
    """
    try:
        from tensorflow import errors
    except ImportError:
        return None
    if not isinstance(error, errors.UnavailableError | errors.DeadlineExceededError):
        return None
    named = {(kind, int(index)) for kind, index in _TASK.findall(str(error))} - {own}
    who = ", ".join(f"{kind} {index}" for kind, index in sorted(named)) or "a worker"
    return ImgkitError(
        f"TF_CONFIG: {who} of the multi-worker run stopped or cannot be reached, so this "
        "worker stopped too. Start every worker again with --resume to go on from the "
        "last checkpoint"
    )
