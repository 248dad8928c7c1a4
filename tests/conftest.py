"""Shared fixtures: tiny images written into tmp_path, so tests need no data files.

Also the one rule for tests that need something from outside the repository (real
data, ../shared, a tmpfs mount, an extra such as onnxruntime or Ray): on a user's
machine they skip with the reason; under ``CI=true`` they fail, since CI installs all
of them and a missing one there is a broken set-up, not a green skip. Use
:func:`need`, :func:`need_module` or ``@pytest.mark.needs(condition, reason)``.
"""

from __future__ import annotations

import functools
import importlib
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def in_ci() -> bool:
    """True when the CI variable says so (CI services set ``CI=true``)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def need(condition: bool, reason: str) -> None:
    """Go on when ``condition`` holds; else skip with ``reason``, or fail under CI=true."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing requirement fails, it does not skip)",
                    pytrace=False)  # fmt: skip
    pytest.skip(reason, allow_module_level=True)


def need_module(name: str, reason: str):
    """Import ``name`` (an extra) as :func:`pytest.importorskip` does, failing under CI=true.

    Only a missing module skips: one that is there but fails to import raises as usual.
    """
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name is None or name != e.name and not name.startswith(e.name + "."):
            raise  # the extra is there; something it imports is not
        need(False, f"{reason}: {e}")


@functools.cache
def shared_model(name: str, classes: int, side: int, channels: int):
    """``create_model(name, ...)`` with no pretrained weights, built once per test process.

    The keras.applications backbones take 3-8 s each to build on a 2-core CPU (and
    saving then loading one takes longer than that), so the tests that only call,
    train a step of, or save one share a build. Its weights are whatever the tests
    before left: use it where any weights do.
    """
    from imgkit.models import create_model

    return create_model(name, classes, (side, side), channels=channels, weights="none")


# The workflow scripts (cli/*.sh end to end on tiny data) are the longest tests, and
# three of them share a file: each is an xdist group of its own, so both workers take
# them. Every other test stays in its file's group (``--dist loadgroup``), so that a
# module fixture is built on one worker only (test_segmentation's script run is one:
# the tests of its bundle share it).
WORKFLOW_TESTS = frozenset({
    "test_fashion_mnist_script_end_to_end",
    "test_dropout_study_script",
    "test_cats_vs_dogs_script_end_to_end",
    "test_histopathology_script_end_to_end",
})  # fmt: skip


@pytest.hookimpl(tryfirst=True)  # before xdist adds each test's group to its node id
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        alone = getattr(item, "originalname", item.name) in WORKFLOW_TESTS
        item.add_marker(pytest.mark.xdist_group(item.nodeid if alone else item.path.name))


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "needs(condition, reason): skip unless condition, with the reason (fails under CI=true)",
    )


def pytest_runtest_setup(item):
    """``@pytest.mark.tensorflow``: skip, saying why, unless Keras runs on TensorFlow.

    SavedModel and TFLite export, tf2onnx, tf.summary's event files and TF's logical
    devices exist only there; the JAX suite (.ci/jax_tests) runs without TensorFlow,
    so this one is a skip under CI too (it is about the backend, not a missing
    install). Then ``@pytest.mark.needs``, through :func:`need`.
    """
    if item.get_closest_marker("tensorflow") is not None:
        _need_tensorflow()
    for marker in item.iter_markers("needs"):
        need(*marker.args, **marker.kwargs)


def _need_tensorflow() -> None:
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("needs TensorFlow, which is not installed (Keras's TensorFlow backend)")
    import keras

    if keras.config.backend() != "tensorflow":
        pytest.skip(f"needs Keras's TensorFlow backend (this run: {keras.config.backend()})")


# Distinct, easy-to-tell-apart colours for the classes of class_folder().
CLASS_COLOURS = {"cats": (200, 40, 40), "dogs": (40, 200, 40), "birds": (40, 40, 200)}


def write_image(
    path: str | os.PathLike,
    size: tuple[int, int] = (8, 6),
    mode: str = "RGB",
    color=None,
    fmt: str | None = None,
    **save_options,
) -> Path:
    """Write a small image and return its path.

    Args:
        path: where to write (parent folders are made).
        size: (width, height), as Pillow counts.
        mode: any Pillow mode ("RGB", "L", "RGBA", "CMYK", "P", "1", "I;16", ...).
        color: a fill colour in that mode, or None for a gradient (so resizing and
            orientation have something to show).
        fmt: Pillow format name ("PNG", "JPEG", ...); default: from the extension.
        **save_options: passed to ``Image.save`` (``quality``, ``exif``, ...).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if color is not None:
        img = Image.new(mode, size, color)
    else:
        w, h = size
        ramp = np.add.outer(np.arange(h) * 7, np.arange(w) * 13) % 256
        if mode == "I;16":
            img = Image.fromarray((ramp * 257).astype(np.uint16))
        else:
            gray = Image.fromarray(ramp.astype(np.uint8))
            img = gray if mode == "L" else gray.convert("RGB").convert(mode)
    img.save(path, format=fmt, **save_options)
    return path


@pytest.fixture
def make_image():
    """``make_image(path, size=(w, h), mode="RGB", color=None, fmt=None, **save_options)``."""
    return write_image


def make_class_folder(
    root: str | os.PathLike,
    classes: dict[str, tuple[int, int, int]] | None = None,
    per_class: int = 6,
    size: tuple[int, int] = (12, 10),
) -> Path:
    """Write ``root/<class>/<n>.png`` images, each class a different solid colour."""
    root = Path(root)
    rng = np.random.default_rng(0)
    for name, colour in (classes or CLASS_COLOURS).items():
        for n in range(per_class):
            jitter = rng.integers(-20, 20, size=(size[1], size[0], 3))
            pixels = np.clip(np.array(colour) + jitter, 0, 255).astype(np.uint8)
            path = root / name / f"{n}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(path)
    return root


@pytest.fixture
def class_folder(tmp_path) -> Path:
    """``tmp_path/photos`` with classes cats, dogs, birds: 6 small PNGs each."""
    return make_class_folder(tmp_path / "photos")
