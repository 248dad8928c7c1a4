"""Finding the Python code a Keras model file would run when loaded, without Keras.

:mod:`imgkit.bundle` refuses such bundles unless trusted; ``imgkit import`` checks the
files it takes the same way.
"""

from __future__ import annotations

import json
import os
import zipfile

# model.keras's config.json is a few hundred KB at most; a bigger one is not scanned
# here (Keras's own safe mode still refuses code in it).
_MAX_CONFIG_BYTES = 64 * 1024 * 1024


def code_layers(model_file: str | os.PathLike) -> list[str]:
    """What in a ``model.keras`` carries Python code, found without Keras.

    A Lambda layer, or any layer whose config holds a serialized Python lambda (an
    activation, say), would run that code as soon as Keras rebuilds it. The file is
    read as the zip it is; one that cannot be read gives [] (loading it then fails
    with its own error).

    Returns:
        One description per layer, e.g. ``"a Lambda layer 'double'"``.
    """
    try:
        with zipfile.ZipFile(model_file) as archive:
            info = archive.getinfo("config.json")
            if info.file_size > _MAX_CONFIG_BYTES:
                return []
            config = json.loads(archive.read(info).decode("utf-8"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return []
    return config_code(config)


def config_code(config) -> list[str]:
    """What in a Keras model config (parsed JSON, from any file format) carries code.

    Lambda layers and serialized Python lambdas, as :func:`code_layers` finds them, and
    SavedModel layers (``TFSMLayer``: a TensorFlow graph from outside the file).
    """
    found: list[str] = []
    _find_code(config, "?", found)
    return found


def _find_code(node, layer: str, found: list[str]) -> None:
    # The whole config is walked, since nested models (backbones) hold layers of their
    # own, except compile_config: the model is loaded uncompiled, so a lambda loss
    # there never runs.
    if isinstance(node, list):
        for value in node:
            _find_code(value, layer, found)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("class_name")
    config = node.get("config")
    if isinstance(config, dict) and isinstance(config.get("name"), str):
        layer = config["name"]
    if kind == "Lambda":
        what = f"a Lambda layer {layer!r}"
    elif kind == "__lambda__":
        what = f"a Python lambda in layer {layer!r}"
    elif kind == "TFSMLayer":
        what = f"a SavedModel layer {layer!r}"
    else:
        for key, value in node.items():
            if key != "compile_config":
                _find_code(value, layer, found)
        return
    if what not in found:
        found.append(what)
