"""Importing Keras (and its backend) once, quietly.

TensorFlow's C++ layer prints start-up notes (oneDNN, CPU features, absl) straight to
file descriptor 2 before any Python logging is set up, and no environment variable
silences all of them in TF 2.21. On a command's stderr they bury the lines that matter,
so the first import of Keras runs with descriptor 2 pointed at /dev/null. With
``--verbose`` (IMGKIT_VERBOSE=1) nothing is hidden.

Keras needs one backend installed: TensorFlow by default, JAX or PyTorch with
KERAS_BACKEND set. Without it, ``import keras`` fails deep inside Keras with a bare
ModuleNotFoundError; :func:`import_keras_quietly` turns that into one line naming the
pip install.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys

from imgkit.errors import ImgkitError

# A backend module -> (its name, how to install it).
BACKENDS = {
    "tensorflow": ("TensorFlow", 'pip install -e ".[cpu]"'),
    "jax": ("JAX", 'pip install -e ".[jax]"'),
    "torch": ("PyTorch", "pip install torch"),
}


class MissingBackendError(ImgkitError):
    """The Keras backend (KERAS_BACKEND, TensorFlow by default) is not installed, or is
    not the one a step needs (export under JAX)."""


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
    try:
        if os.environ.get("IMGKIT_VERBOSE") == "1":
            import keras  # noqa: F401

            return
        with _fd2_silenced():
            import keras  # noqa: F401
    except ModuleNotFoundError as e:
        if e.name not in BACKENDS:
            raise
        raise MissingBackendError(missing_backend_message(e.name)) from e


def missing_backend_message(module: str) -> str:
    """One line for a Keras backend that is not installed: what to install, or what to set."""
    name, install = BACKENDS[module]
    chosen = os.environ.get("KERAS_BACKEND")
    why = f"KERAS_BACKEND={chosen}" if chosen else "the default"
    message = f"Keras's backend is {name} ({why}) and it is not installed: {install}"
    others = [m for m in BACKENDS if m != module and importlib.util.find_spec(m) is not None]
    if others == ["tensorflow"]:
        return f"{message}, or unset KERAS_BACKEND to use TensorFlow"
    if others:
        return f"{message}, or use the installed one: KERAS_BACKEND={others[0]}"
    if module != "jax":
        return f'{message}, or pip install -e ".[jax]" and set KERAS_BACKEND=jax'
    return message
