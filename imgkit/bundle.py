"""Model bundles: the folder ``imgkit train`` writes and every consumer reads.

::

    RUN/
      model.keras    the Keras 3 model (loaded with safe_mode on)
      imgkit.json    task, classes, input size, channels, pixel scaling, polarity,
                     training arguments, dataset hash, metrics, temperature,
                     transfer (pretrained models) (written last)
      history.csv    one row per epoch
      curves.png     loss and accuracy curves
      checkpoints/   what ``imgkit train --resume`` needs

imgkit.json is written last, so its presence means the bundle is complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from imgkit import __version__
from imgkit.errors import BadBundleError
from imgkit.fileio import write_text

BUNDLE_META = "imgkit.json"
MODEL_FILE = "model.keras"
HISTORY_FILE = "history.csv"
CURVES_FILE = "curves.png"
CHECKPOINT_DIR = "checkpoints"

# Bumped only when a change to imgkit.json or model.keras would make an older imgkit
# misread a bundle. Readers accept this format and older ones.
BUNDLE_FORMAT = 1

REQUIRED_KEYS = ("task", "model", "classes", "input_size", "channels", "pixels")


def save_meta(folder: str | os.PathLike, meta: dict) -> Path:
    """Write ``meta`` as the bundle's imgkit.json (atomically) and return its path.

    ``imgkit_version`` and ``format`` are filled in when missing.
    """
    meta = {"imgkit_version": __version__, "format": BUNDLE_FORMAT, **meta}
    path = Path(folder) / BUNDLE_META
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text(path, json.dumps(meta, indent=2, ensure_ascii=False) + "\n")


def read_meta(folder: str | os.PathLike) -> dict:
    """Read and check a bundle's imgkit.json.

    Raises:
        BadBundleError: no such folder, no imgkit.json (an interrupted run, or not a
            bundle), unreadable JSON, missing keys, or a newer bundle format.
    """
    root = Path(folder)
    if not root.is_dir():
        raise BadBundleError(f"{root}: no such model bundle folder (make one with `imgkit train`)")
    path = root / BUNDLE_META
    if not path.is_file():
        if (root / CHECKPOINT_DIR).is_dir():
            raise BadBundleError(
                f"{root}: training did not finish (checkpoints but no {BUNDLE_META}); "
                f"continue it with `imgkit train DATA -o {root} --resume`"
            )
        raise BadBundleError(
            f"{root}: not a model bundle (no {BUNDLE_META}; make one with `imgkit train`)"
        )
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BadBundleError(f"{path}: cannot read ({e})") from e
    if not isinstance(meta, dict):
        raise BadBundleError(f"{path}: not a JSON object")
    fmt = meta.get("format", 1)
    if not isinstance(fmt, int) or fmt > BUNDLE_FORMAT:
        raise BadBundleError(
            f"{root}: written by imgkit {meta.get('imgkit_version', '?')} in bundle format {fmt}; "
            f"this imgkit {__version__} reads format {BUNDLE_FORMAT} and older (upgrade imgkit)"
        )
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise BadBundleError(f"{path}: missing keys {missing}")
    return meta


class Bundle:
    """A complete model bundle; the Keras model is loaded on first use of ``.model``."""

    def __init__(self, path: Path, meta: dict):
        self.path = path
        self.meta = meta
        self._model = None

    @property
    def task(self) -> str:
        return self.meta["task"]

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def input_size(self) -> tuple[int, int]:
        h, w = self.meta["input_size"]
        return int(h), int(w)

    @property
    def channels(self) -> int:
        return int(self.meta["channels"])

    @property
    def resize(self) -> str:
        return self.meta.get("resize", "stretch")

    @property
    def polarity(self) -> str | None:
        """ "dark" (dark background, like Fashion-MNIST), "light", or None (unclear)."""
        return self.meta.get("polarity")

    @property
    def output(self) -> str:
        return self.meta.get("output", "softmax")

    @property
    def pixels(self) -> dict:
        return dict(self.meta["pixels"])

    @property
    def temperature(self) -> float:
        """The temperature fitted on the val split at training (1.0 when none was)."""
        return float(self.meta.get("temperature") or 1.0)

    @property
    def metrics(self) -> dict:
        return dict(self.meta.get("metrics") or {})

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def model(self):
        """The Keras model (uncompiled, loaded with ``safe_mode=True``)."""
        if self._model is None:
            import keras

            try:
                self._model = keras.saving.load_model(
                    self.model_path, compile=False, safe_mode=True
                )
            except Exception as e:  # Keras raises many kinds; the user needs one line
                raise BadBundleError(f"{self.model_path}: cannot load the model ({e})") from e
        return self._model

    def __repr__(self) -> str:
        return f"Bundle({str(self.path)!r}, model={self.meta.get('model')!r}, task={self.task!r})"


def load_bundle(folder: str | os.PathLike, task: str | None = None) -> Bundle:
    """Open a model bundle, checking it is complete and made for ``task``.

    Args:
        folder: the bundle folder (``imgkit train -o``).
        task: the task the caller needs ("classification", "segmentation"), or None.

    Returns:
        The bundle; its model is loaded lazily.

    Raises:
        BadBundleError: missing folder or files, another task, an incompatible version.
    """
    root = Path(folder)
    meta = read_meta(root)
    if task is not None and meta["task"] != task:
        raise BadBundleError(f"{root}: this bundle is for {meta['task']}, not {task}")
    if not (root / MODEL_FILE).is_file():
        raise BadBundleError(f"{root}: {MODEL_FILE} is missing (the bundle is incomplete)")
    return Bundle(root, meta)
