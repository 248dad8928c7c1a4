"""Tiny model bundles whose answers can be worked out by hand, shared by the tests.

The classifier's answer is an image's mean brightness (Rescaling, global average
pooling, a fixed Dense layer): a dark image is "dim", a bright one "lit". The segmenter
marks each pixel brighter than mid-grey (a fixed 1x1 convolution and a sigmoid).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

CLASSES = ["dim", "lit"]
SIZE = 8


def bundle_meta(task: str = "classification", output: str = "softmax", **meta) -> dict:
    return {
        "imgkit_version": "0.1.0",
        "task": task,
        "model": "brightness",
        "classes": CLASSES if task == "classification" else ["background", "object"],
        "input_size": [SIZE, SIZE],
        "channels": 1,
        "resize": "stretch",
        "pixels": {"scale": 1 / 255, "offset": 0.0, "inside_model": True},
        "polarity": "dark",
        "output": output if task == "classification" else "sigmoid",
        "train_args": {},
        "dataset": {"path": "", "hash": ""},
        "metrics": {},
        "epochs_run": 1,
        "best_epoch": 1,
        "created": "2026-01-01T00:00:00",
        **meta,
    }


def save_classifier(folder: Path, output: str = "softmax", **meta) -> Path:
    """logit(lit) - logit(dim) = 20 * (mean brightness in [0, 1]) - 10."""
    import keras

    inputs = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    if output == "sigmoid":
        dense = keras.layers.Dense(1, activation="sigmoid")
        out = dense(x)
        dense.set_weights([np.array([[20.0]]), np.array([-10.0])])
    else:
        dense = keras.layers.Dense(2, activation="softmax")
        out = dense(x)
        dense.set_weights([np.array([[-10.0, 10.0]]), np.array([5.0, -5.0])])
    return _save(folder, keras.Model(inputs, out), bundle_meta(output=output, **meta))


def save_segmenter(folder: Path, **meta) -> Path:
    """P(object) = sigmoid(20 * (pixel in [0, 1]) - 10), pixel by pixel."""
    import keras

    inputs = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    conv = keras.layers.Conv2D(1, 1, activation="sigmoid")
    out = conv(x)
    conv.set_weights([np.full((1, 1, 1, 1), 20.0), np.array([-10.0])])
    return _save(folder, keras.Model(inputs, out), bundle_meta(task="segmentation", **meta))


def _save(folder: Path, model, meta: dict) -> Path:
    folder.mkdir(parents=True)
    model.save(folder / "model.keras")
    (folder / "imgkit.json").write_text(json.dumps(meta), encoding="utf-8")
    return folder
