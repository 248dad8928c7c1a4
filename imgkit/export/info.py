"""``imgkit info``: what a bundle is, read from imgkit.json and the files beside it.

Nothing here loads the model or imports TensorFlow: a bundle can be described on a
machine that could not run it.
"""

from __future__ import annotations

import os
from pathlib import Path

from imgkit.bundle import CHECKPOINT_DIR, EXPORT_FILES, MODEL_FILE, Bundle, read_meta

# Copied from imgkit.json as they are, in this order (absent ones are left out).
_KEYS = (
    "task",
    "model",
    "classes",
    "input_size",
    "channels",
    "resize",
    "pixels",
    "polarity",
    "output",
    "temperature",
    "threshold",
    "train_args",
    "dataset",
    "metrics",
    "epochs_run",
    "best_epoch",
    "transfer",
    "created",
    "imgkit_version",
    "format",
)


def _bytes(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.is_file() else 0


def bundle_info(folder: str | os.PathLike) -> dict:
    """What a bundle is: imgkit.json's facts, its exports, and its size on disk.

    Returns:
        A JSON-ready dict: path, task, model, classes, num_classes, input size,
        channels, pixels, training arguments, metrics, temperature, threshold, ...,
        ``exports`` (format -> record, with ``present``: whether the file is there),
        and ``size`` (bytes: total, and per file of note).

    Raises:
        BadBundleError: not a complete bundle.
    """
    root = Path(folder)
    meta = read_meta(root)
    out: dict = {"path": str(root)}
    out.update({k: meta[k] for k in _KEYS if k in meta})
    out["num_classes"] = len(meta["classes"])
    calibration = Bundle(root, meta)  # read as predict reads it; the model is not loaded
    out["temperature"] = calibration.temperature
    out["threshold"] = calibration.threshold
    exports = {}
    for fmt, record in (meta.get("exports") or {}).items():
        record = dict(record) if isinstance(record, dict) else {}
        record["present"] = (root / str(record.get("file", EXPORT_FILES.get(fmt, "")))).exists()
        exports[fmt] = record
    out["exports"] = exports
    files = {name: _bytes(root / name) for name in (MODEL_FILE, *EXPORT_FILES.values())}
    files[CHECKPOINT_DIR] = _bytes(root / CHECKPOINT_DIR)
    out["size"] = {
        "total": _bytes(root),
        "files": {name: n for name, n in files.items() if n},
    }
    return out


def human_bytes(n: int) -> str:
    """1234567 -> "1.2 MB" (powers of 1000, as file managers show them)."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover
