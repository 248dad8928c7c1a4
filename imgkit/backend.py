"""Importing Keras (and its backend) once, quietly.

TensorFlow's C++ layer prints start-up notes (oneDNN, CPU features, absl) straight to
file descriptor 2 before any Python logging is set up, and no environment variable
silences all of them in TF 2.21. On a command's stderr they bury the lines that matter,
so the first import of Keras runs with descriptor 2 pointed at /dev/null. With
``--verbose`` (IMGKIT_VERBOSE=1) nothing is hidden.
"""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def _fd2_silenced():
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real descriptor 2 (an embedded interpreter)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_keras_quietly() -> None:
    """Import keras once with the backend's C++ start-up chatter hidden."""
    if "keras" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ.get("IMGKIT_VERBOSE") == "1":
        import keras  # noqa: F401

        return
    with _fd2_silenced():
        import keras  # noqa: F401
