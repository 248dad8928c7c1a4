"""Models made elsewhere, put in the shape every imgkit consumer feeds: raw 0-255 NHWC.

:func:`load_foreign` opens a ``.keras`` file, a legacy ``.h5`` (Keras 2's
``model.save("fashion_mnist_model.h5")``) or a SavedModel folder (through
``keras.layers.TFSMLayer``), refusing one that carries code unless trusted.
:func:`wrap` puts what imgkit's own models have inside them around it: the pixel
scaling in front (:data:`PIXEL_RANGES`), a reshape for a model that takes (h, w) or
flat pixels, and a softmax or sigmoid behind a model that ends in logits, so predict,
tta, segment and export use it unchanged.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgkit.data.images import CHANNELS
from imgkit.errors import BadInputError, UntrustedCodeError
from imgkit.models.vgg16 import caffe_kernel

# --pixels: the range the model was trained on, as imgkit.json's "pixels" records it
# (x * scale + offset, inside the model). caffe is keras.applications' VGG/ResNet
# preprocessing: BGR order, minus the ImageNet means, no scaling.
PIXEL_RANGES = {
    "0-1": {"scale": 1 / 255, "offset": 0.0},
    "-1-1": {"scale": 1 / 127.5, "offset": -1.0},
    "0-255": {"scale": 1.0, "offset": 0.0},
    "caffe": {
        "scale": 1.0,
        "offset": 0.0,
        "mode": "caffe",
        "channel_order": "BGR",
        "mean": [103.939, 116.779, 123.68],
    },
}
ACTIVATIONS = ("softmax", "sigmoid", "linear")
# ``imgkit import --task``: the short names and the tasks they stand for.
IMPORT_TASKS = {"classify": "classification", "segment": "segmentation"}
SAVEDMODEL_DIR = "savedmodel"


@dataclass
class Foreign:
    """A loaded foreign model: the Keras model (or TFSMLayer) and what it takes."""

    core: object
    format: str  # "keras", "h5" or "savedmodel"
    input_shape: tuple  # without the batch axis; None where open
    activation: str | None = None  # what its last layer applies, when that can be read


@dataclass
class Wrapped:
    """The model imgkit will save, and what was done to make it."""

    model: object
    input_size: tuple[int, int]
    channels: int
    output: str  # "softmax" or "sigmoid", as imgkit.json's "output"
    width: int  # output units (classification) or mask channels (segmentation)
    info: dict = field(default_factory=dict)


def _refuse_code(path: Path, found: list[str], trust: bool) -> None:
    if found and not trust:
        from imgkit.bundle import TRUST_HINT

        raise UntrustedCodeError(
            f"{path}: the model contains code ({', '.join(found)}) that imgkit does not run "
            f"unless told to; import only models you trust, and for one you trust {TRUST_HINT}"
        )


def _h5_config(path: Path) -> dict:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
    except OSError as e:
        raise BadInputError(f"{path}: not an HDF5 file ({e})") from e
    if raw is None:
        raise BadInputError(
            f"{path}: holds weights only, no model (save it with model.save(), not save_weights())"
        )
    return json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)


def load_foreign(path: str | os.PathLike, trust: bool = False, savedmodel_copy=None) -> Foreign:
    """Load a model file or SavedModel folder, refusing code unless ``trust``.

    Args:
        path: a ``.keras`` file, a legacy ``.h5``/``.hdf5`` file or a SavedModel folder.
        trust: run the model's code (Lambda layers; a SavedModel's graph).
        savedmodel_copy: for a SavedModel, the folder it was copied to; the layer loads
            that copy (the bundle's own), not the original.

    Raises:
        BadInputError: no such file, an unknown format, a file Keras cannot load.
        UntrustedCodeError: code in the model and ``trust`` not given.
    """
    import keras

    from imgkit.bundle import code_layers, config_code

    path = Path(path)
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise BadInputError(f"{path}: a folder but not a SavedModel (no saved_model.pb)")
        # A SavedModel's graph runs as it loads, so Keras itself never loads one in
        # safe mode; imgkit asks for the same trust.
        _refuse_code(path, ["a TensorFlow SavedModel graph"], trust)
        return _load_savedmodel(Path(savedmodel_copy or path))
    if not path.is_file():
        raise BadInputError(f"{path}: no such model file")
    suffix = path.suffix.lower()
    if suffix == ".keras":
        fmt, found = "keras", code_layers(path)
    elif suffix in (".h5", ".hdf5"):
        fmt, found = "h5", config_code(_h5_config(path))
    else:
        raise BadInputError(
            f"{path}: unknown model format {suffix or '(no extension)'!r} "
            "(give a .keras file, a legacy .h5 file or a SavedModel folder)"
        )
    _refuse_code(path, found, trust)
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=not trust)
    except Exception as e:  # Keras raises many kinds; the user needs one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BadInputError(f"{path}: Keras cannot load it ({first})") from e
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise BadInputError(
            f"{path}: the model has {len(model.inputs)} inputs and {len(model.outputs)} "
            "outputs; imgkit needs one image input and one output"
        )
    return Foreign(model, fmt, tuple(model.input_shape[1:]), last_activation(model))


def _load_savedmodel(path: Path) -> Foreign:
    import keras

    if keras.config.backend() != "tensorflow":  # TFSMLayer runs TensorFlow's graph
        raise BadInputError(
            f"{path}: a SavedModel needs Keras's TensorFlow backend (this is "
            f'{keras.config.backend()}): pip install -e ".[cpu]" and set KERAS_BACKEND=tensorflow'
        )
    layer, errors = None, []
    for endpoint in ("serve", "serving_default"):
        try:
            layer = keras.layers.TFSMLayer(str(path), call_endpoint=endpoint, trainable=False)
            break
        except Exception as e:  # ValueError for a missing endpoint; others for damage
            errors.append(str(e).strip().splitlines()[0] if str(e).strip() else repr(e))
    if layer is None:
        raise BadInputError(f"{path}: cannot load the SavedModel ({errors[-1]})")
    fn = layer.call_endpoint_fn
    concrete = (getattr(fn, "concrete_functions", None) or [fn])[0]
    args, kwargs = concrete.structured_input_signature
    specs = [*args, *kwargs.values()]
    if len(specs) != 1:
        raise BadInputError(f"{path}: the SavedModel takes {len(specs)} inputs; imgkit needs one")
    return Foreign(layer, "savedmodel", tuple(specs[0].shape.as_list()[1:]))


def last_activation(model) -> str | None:
    """The activation the model's last layer applies (softmax, sigmoid, linear), or None."""
    import keras

    layer = model
    while isinstance(layer, keras.Model) and layer.layers:
        layer = layer.layers[-1]
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    name = getattr(getattr(layer, "activation", None), "__name__", None)
    return name if name in ACTIVATIONS else None


def resolve_input(
    shape: tuple, size: tuple[int, int] | None, channels: int | None
) -> tuple[int, int, int]:
    """The (height, width, channels) imgkit feeds a model whose input is ``shape``.

    Rank 3 (h, w, c) is an image; (h, w) a grayscale image without its channel axis
    (a Flatten-first Fashion-MNIST model); (n,) flat pixels, which need ``size``. Open
    sides and channels come from ``size`` and ``channels``; given ones must agree.

    Raises:
        BadInputError: another rank, a side or channel count that cannot be settled,
            or a given value that contradicts the model.
    """
    shape = tuple(None if v is None else int(v) for v in shape)
    if len(shape) == 3:
        model_size, model_channels = shape[:2], shape[2]
    elif len(shape) == 2:
        model_size, model_channels = shape, 1
    elif len(shape) == 1:
        model_size, model_channels = (None, None), None
    else:
        raise BadInputError(
            f"the model takes inputs of shape {('batch', *shape)}; imgkit feeds images "
            "(batch, height, width, channels), (batch, height, width) or flat pixels"
        )
    if len(shape) == 1 and channels is None:
        channels = 1  # flat pixels: grey unless told otherwise
    c = _settle("channels", model_channels, channels, "--channels 1|3")
    if c not in CHANNELS:
        raise BadInputError(f"the model takes {c} channels; imgkit feeds 1 (grey) or 3 (RGB)")
    given = size or (None, None)
    h = _settle("height", model_size[0], given[0], "--size HxW")
    w = _settle("width", model_size[1], given[1], "--size HxW")
    if len(shape) == 1 and shape[0] is not None and shape[0] != h * w * c:
        raise BadInputError(
            f"the model takes {shape[0]} flat values, not {h}x{w}x{c} = {h * w * c}; "
            "give the --size and --channels it was trained on"
        )
    return h, w, c


def _settle(what: str, model_value, given, flag: str) -> int:
    if model_value is None and given is None:
        raise BadInputError(f"the model's input {what} is open; give it with {flag}")
    if model_value is not None and given is not None and int(given) != model_value:
        raise BadInputError(
            f"the model's input {what} is {model_value}, but {flag.split()[0]} says {given}"
        )
    return int(model_value if model_value is not None else given)


def wrap(
    foreign: Foreign, pixels: str, task: str, size=None, channels=None, activation=None
) -> Wrapped:
    """Put pixel scaling, a reshape and an output activation around ``foreign``.

    Args:
        foreign: the loaded model.
        pixels: a key of :data:`PIXEL_RANGES`.
        task: "classification" or "segmentation".
        size: (height, width) for open or flat inputs.
        channels: 1 or 3, for open or flat inputs.
        activation: what the model ends in ("softmax", "sigmoid", "linear"); None
            reads it from the last layer, else from the outputs on random images.

    Raises:
        BadInputError: an input or output imgkit cannot use.
    """
    import keras

    if pixels not in PIXEL_RANGES:
        raise BadInputError(f"--pixels must be one of {', '.join(PIXEL_RANGES)}, got {pixels!r}")
    h, w, c = resolve_input(foreign.input_shape, size, channels)
    inputs = keras.Input((h, w, c), name="pixels")
    x, scaling = _scaling(inputs, pixels, c)
    rank = len(foreign.input_shape)
    if rank == 2:
        x = keras.layers.Reshape((h, w), name="drop_channel_axis")(x)
    elif rank == 1:
        x = keras.layers.Reshape((h * w * c,), name="flatten_pixels")(x)
    y = _single_output(foreign.core(x))
    if scaling is not None:
        scaling.set_weights(list(caffe_kernel(c)))
    raw = keras.Model(inputs, y, name="imported_raw")
    found = activation or foreign.activation
    detected_by = "given" if activation else "last layer"
    if found is None:
        found, detected_by = probe_activation(raw, task), "outputs on random images"
    out_shape = tuple(y.shape[1:])
    if task == "segmentation":
        y, output, width, added = _segmentation_head(y, out_shape, (h, w), found)
    else:
        y, output, width, added = _classification_head(y, out_shape, found)
    model = keras.Model(inputs, y, name="imported")
    info = {"activation": found, "activation_from": detected_by, "added": added}
    return Wrapped(model, (h, w), c, output, width, info)


def _scaling(inputs, pixels: str, channels: int):
    import keras

    spec = PIXEL_RANGES[pixels]
    if pixels == "caffe":
        if channels != 3:
            raise BadInputError("--pixels caffe is for models that take 3 (BGR) channels")
        # The same fixed 1x1 convolution as imgkit's vgg16: RGB -> BGR minus the means.
        conv = keras.layers.Conv2D(3, 1, name="caffe", dtype="float32", trainable=False)
        return conv(inputs), conv
    layer = keras.layers.Rescaling(spec["scale"], spec["offset"], name="scaling")
    return layer(inputs), None


def _single_output(y):
    if isinstance(y, dict) and len(y) == 1:
        return next(iter(y.values()))
    if isinstance(y, (list, tuple)) and len(y) == 1:
        return y[0]
    if isinstance(y, (dict, list, tuple)):
        raise BadInputError(f"the model has {len(y)} outputs; imgkit needs one")
    return y


def probe_activation(model, task: str, n: int = 8) -> str:
    """Tell probabilities from logits by the outputs on ``n`` random images."""
    shape = tuple(int(v) for v in model.input_shape[1:])
    x = np.random.default_rng(0).integers(0, 256, (n, *shape)).astype(np.float32)
    y = np.asarray(model.predict_on_batch(x), dtype=np.float64)
    y = y.reshape(n, -1) if task == "classification" else y.reshape(-1, y.shape[-1])
    if not np.isfinite(y).all() or y.min() < 0 or y.max() > 1:
        return "linear"
    if y.shape[1] > 1 and np.allclose(y.sum(axis=1), 1.0, atol=1e-3):
        return "softmax"
    return "sigmoid"


def _classification_head(y, out_shape: tuple, activation: str):
    import keras

    if len(out_shape) != 1 or out_shape[0] is None:
        raise BadInputError(
            f"the model's output has shape {('batch', *out_shape)}; a classifier gives "
            "(batch, classes) (for masks, import with --task segment)"
        )
    width = int(out_shape[0])
    if width == 1:
        if activation == "softmax":
            raise BadInputError("the model ends in a softmax over 1 unit: it always says 1.0")
        output = "sigmoid"
    elif activation == "sigmoid":
        raise BadInputError(
            f"the model ends in {width} sigmoid units (multi-label); imgkit classifies one "
            "label per image (1 sigmoid unit for two classes, or k softmax units)"
        )
    else:
        output = "softmax"
    added = output if activation == "linear" else None
    if added:
        y = keras.layers.Activation(added, dtype="float32", name="probabilities")(y)
    return y, output, width, added


def _segmentation_head(y, out_shape: tuple, size: tuple[int, int], activation: str):
    import keras

    if len(out_shape) != 3 or tuple(out_shape[:2]) != tuple(size) or out_shape[2] not in (1, 2):
        raise BadInputError(
            f"the model's output has shape {('batch', *out_shape)}; a segmentation model "
            f"gives a mask (batch, {size[0]}, {size[1]}, 1) (or 2 softmax channels)"
        )
    width = int(out_shape[2])
    if width == 2:
        # Background/object softmax: the object channel is the mask. A fixed 1x1
        # convolution picks it, so the saved model stays free of code.
        added = "softmax" if activation == "linear" else None
        if added:
            y = keras.layers.Activation("softmax", dtype="float32", name="mask_softmax")(y)
        pick = keras.layers.Conv2D(1, 1, use_bias=False, trainable=False, name="object_channel")
        y = pick(y)
        pick.set_weights([np.array([[[[0.0], [1.0]]]], dtype=np.float32)])
        return y, "sigmoid", width, added
    if activation == "softmax":
        raise BadInputError("the model ends in a softmax over 1 channel: it always says 1.0")
    added = "sigmoid" if activation == "linear" else None
    if added:
        y = keras.layers.Activation("sigmoid", dtype="float32", name="mask")(y)
    return y, "sigmoid", width, added
