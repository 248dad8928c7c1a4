"""Model bundles: the folder ``imgkit train`` writes and every consumer reads.

::

    RUN/
      model.keras    the Keras 3 model (loaded with safe_mode on unless trusted)
      imgkit.json    task, classes, input size, channels, pixel scaling, polarity,
                     training arguments, dataset hash, metrics, temperature,
                     transfer (pretrained models) (written last)
      history.csv    one row per epoch
      curves.png     loss and accuracy curves
      checkpoints/   what ``imgkit train --resume`` needs
      model.onnx     ``imgkit export`` (optional); model.int8.onnx, openvino/,
                     openvino-int8/, saved_model/ and model.tflite too, each with
                     a record under ``exports`` in imgkit.json

imgkit.json is written last, so its presence means the bundle is complete.

A cross-validation folder (``imgkit cv``) is a bundle too: its imgkit.json names its
fold bundles under ``ensemble`` and holds no model of its own; :class:`Ensemble`'s model
averages the fold models' probabilities (or masks' maps), and the temperature fitted on
the out-of-fold predictions is applied once, to the average.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import reprlib
from pathlib import Path

from imgkit import __version__
from imgkit.errors import BadBundleError, UntrustedCodeError
from imgkit.fileio import write_text
from imgkit.model_code import code_layers, config_code  # noqa: F401 (imported from here)

BUNDLE_META = "imgkit.json"
MODEL_FILE = "model.keras"
HISTORY_FILE = "history.csv"
CURVES_FILE = "curves.png"
CHECKPOINT_DIR = "checkpoints"
# What `imgkit export` writes beside model.keras (export -> name in the bundle); the
# OpenVINO ones are folders holding model.xml and model.bin.
EXPORT_FILES = {
    "onnx": "model.onnx",
    "onnx-int8": "model.int8.onnx",
    "openvino": "openvino",
    "openvino-int8": "openvino-int8",
    "savedmodel": "saved_model",
    "tflite": "model.tflite",
}

# Bumped only when a change to imgkit.json or model.keras would make an older imgkit
# misread a bundle. Readers accept this format and older ones.
BUNDLE_FORMAT = 1

REQUIRED_KEYS = ("task", "model", "classes", "input_size", "channels", "pixels")

# Set to 1 (or true/yes) to trust every bundle's code, like --trust-code on each command.
TRUST_ENV = "IMGKIT_TRUST_CODE"
TRUST_HINT = f"add --trust-code (or set {TRUST_ENV}=1)"


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
    _check_values(path, meta)
    return meta


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_values(path: Path, meta: dict) -> None:
    """Refuse a value of the wrong kind in a key that :class:`Bundle` or a command reads,
    so a damaged or hand-edited imgkit.json fails here, in one line, not inside predict."""
    size = meta["input_size"]
    problems = {
        "task": not isinstance(meta["task"], str),
        "model": not isinstance(meta["model"], str),
        "classes": not isinstance(meta["classes"], list)
        or not all(isinstance(c, str) for c in meta["classes"]),
        "input_size": not isinstance(size, list)
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in size),
        "channels": meta["channels"] not in (1, 3),
        "pixels": not isinstance(meta["pixels"], dict),
        # Optional keys; where a consumer reads a missing one as a default, null is too.
        "resize": not isinstance(meta.get("resize", ""), str),
        "output": not isinstance(meta.get("output", ""), str),
        "polarity": not isinstance(meta.get("polarity", ""), (str, type(None))),
        "metrics": not isinstance(meta.get("metrics") or {}, dict),
        "dataset": not isinstance(meta.get("dataset") or {}, dict),
        "temperature": meta.get("temperature") is not None
        and not (_is_number(meta["temperature"]) and meta["temperature"] >= 0),
        "threshold": meta.get("threshold") is not None and not _is_number(meta["threshold"]),
        "exports": not isinstance(meta.get("exports") or {}, dict),
    }
    wrong = [key for key, bad in problems.items() if bad]
    if wrong:
        shown = ", ".join(f"{key}={reprlib.repr(meta[key])}" for key in wrong)
        raise BadBundleError(f"{path}: damaged (unexpected values: {shown})")


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, as exports are recorded with in imgkit.json."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def trust_from_env() -> bool:
    """Whether ``IMGKIT_TRUST_CODE`` says to trust bundles' code (1, true, yes, on)."""
    return os.environ.get(TRUST_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _untrusted(model_file: Path, what: str) -> UntrustedCodeError:
    return UntrustedCodeError(
        f"{model_file}: the model contains code ({what}) that imgkit does not run unless "
        f"told to; load only bundles you trust, and for one you trust {TRUST_HINT}"
    )


def calibration_meta(
    temperature: float | None = None, threshold: float | None = None, metric: str | None = None
) -> dict:
    """imgkit.json's calibration keys, the one place they are written (:class:`Bundle`
    reads them): a temperature fitted on val, a decision or mask threshold and the
    metric that chose it. A value that is None is left out, as the readers expect."""
    out: dict = {}
    if temperature is not None:
        out["temperature"] = float(temperature)
    if threshold is not None:
        out["threshold"] = round(float(threshold), 6)
    if metric is not None:
        out["threshold_metric"] = metric
    return out


def recorded_calibration(meta: dict) -> dict:
    """The temperature and threshold an imgkit.json records, only those it has (for
    tables of many runs; :class:`Bundle` gives one bundle's, with their defaults)."""
    return {k: meta[k] for k in ("temperature", "threshold") if meta.get(k) is not None}


class Bundle:
    """A complete model bundle; the Keras model is loaded on first use of ``.model``.

    ``trust`` lets the model's own code (Lambda layers) run when it is loaded: Keras's
    safe mode is off for it.
    """

    def __init__(self, path: Path, meta: dict, trust: bool = False):
        self.path = path
        self.meta = meta
        self.trust = bool(trust)
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
    def threshold(self) -> float | None:
        """A binary classifier's decision threshold on P(classes[1]), chosen at training
        (None: the most probable class); a segmentation bundle's mask threshold, if any."""
        value = self.meta.get("threshold")
        return float(value) if value is not None else None

    @property
    def thresholds(self) -> list[float] | None:
        """A multi-label bundle's per-label thresholds, in class order (None otherwise)."""
        given = self.meta.get("thresholds")
        if not isinstance(given, dict):
            return None
        try:
            return [float(given[c]) for c in self.classes]
        except (KeyError, TypeError, ValueError):
            raise BadBundleError(
                f"{self.path}: imgkit.json's thresholds must give a number for every class"
            ) from None

    @property
    def metrics(self) -> dict:
        return dict(self.meta.get("metrics") or {})

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def model(self):
        """The Keras model (uncompiled; ``safe_mode=True`` unless the bundle is trusted)."""
        if self._model is None:
            from imgkit.backend import import_keras_quietly

            import_keras_quietly()
            import keras

            try:
                self._model = keras.saving.load_model(
                    self.model_path, compile=False, safe_mode=not self.trust
                )
            except Exception as e:  # Keras raises many kinds; the user needs one line
                if not self.trust and "safe_mode" in str(e):
                    # Code that code_layers() did not spot; Keras's safe mode did.
                    raise _untrusted(self.model_path, "Python code in a layer") from e
                raise BadBundleError(f"{self.model_path}: cannot load the model ({e})") from e
        return self._model

    @model.setter
    def model(self, model) -> None:
        """Run the bundle through another model object: anything with ``predict_on_batch``
        (an ONNX Runtime session, :mod:`imgkit.infer.runtime`) instead of model.keras."""
        self._model = model

    def __repr__(self) -> str:
        return f"Bundle({str(self.path)!r}, model={self.meta.get('model')!r}, task={self.task!r})"


class MeanModel:
    """Models run as one: ``predict_on_batch`` is the mean of their outputs."""

    def __init__(self, members: list[Bundle]):
        self.members = members

    def predict_on_batch(self, x):
        import numpy as np

        outputs = [np.asarray(m.model.predict_on_batch(x), np.float64) for m in self.members]
        return np.mean(outputs, axis=0)


class Ensemble(Bundle):
    """A cross-validation folder used as one bundle: its fold bundles, averaged.

    The fold models' raw outputs are averaged (:class:`MeanModel`), then the ensemble's
    own temperature and threshold (fitted on the out-of-fold predictions) apply.
    """

    def __init__(self, path: Path, meta: dict, members: list[Bundle], trust: bool = False):
        super().__init__(path, meta, trust)
        self.members = members
        self._model = MeanModel(members)

    def __repr__(self) -> str:
        return f"Ensemble({str(self.path)!r}, {len(self.members)} members, task={self.task!r})"


# What every member of an ensemble must share with it: the model's input and output.
_SHARED = ("task", "classes", "input_size", "channels", "resize", "output")


def _load_ensemble(root: Path, meta: dict, task, trust) -> Ensemble:
    names = (meta.get("ensemble") or {}).get("members") or []
    if not names or not all(isinstance(n, str) and "/" not in n for n in names):
        raise BadBundleError(f"{root / BUNDLE_META}: damaged (no list of member folders)")
    members = []
    for name in names:
        if not (root / name / BUNDLE_META).is_file():
            raise BadBundleError(
                f"{root}: {name} is missing or unfinished (finish it with `imgkit cv` or "
                f"`imgkit train ... -o {root / name} --resume`)"
            )
        member = load_bundle(root / name, task, trust)
        differ = [k for k in _SHARED if member.meta.get(k) != meta.get(k)]
        if differ:
            raise BadBundleError(f"{root / name}: its {', '.join(differ)} differ from {root}'s")
        members.append(member)
    return Ensemble(root, meta, members, trust=bool(trust))


def load_bundle(
    folder: str | os.PathLike, task: str | tuple[str, ...] | None = None, trust: bool | None = None
) -> Bundle:
    """Open a model bundle, checking it is complete and made for ``task``.

    A model.keras can carry Python code (Lambda layers) that runs when Keras loads
    it, so such a bundle is refused here, before anything is loaded, unless trusted.

    Args:
        folder: the bundle folder (``imgkit train -o``).
        task: the task the caller needs ("classification", "multilabel",
            "segmentation"), a tuple of tasks it takes, or None.
        trust: run the model's code (Lambda layers) if it has any. None: as
            ``IMGKIT_TRUST_CODE`` says (trusted when 1), else not.

    Returns:
        The bundle (an :class:`Ensemble` for a cross-validation folder); its model is
        loaded lazily.

    Raises:
        BadBundleError: missing folder or files, another task, an incompatible version.
        UntrustedCodeError: the model carries code and ``trust`` is not given.
    """
    root = Path(folder)
    meta = read_meta(root)
    wanted = (task,) if isinstance(task, str) else task
    if wanted is not None and meta["task"] not in wanted:
        raise BadBundleError(
            f"{root}: this bundle is for {meta['task']}, not {' or '.join(wanted)}"
        )
    if "ensemble" in meta:
        return _load_ensemble(root, meta, task, trust)
    if not (root / MODEL_FILE).is_file():
        raise BadBundleError(f"{root}: {MODEL_FILE} is missing (the bundle is incomplete)")
    if trust is None:
        trust = trust_from_env()
    if not trust:
        found = code_layers(root / MODEL_FILE)
        if found:
            raise _untrusted(root / MODEL_FILE, ", ".join(found))
    return Bundle(root, meta, trust=trust)
