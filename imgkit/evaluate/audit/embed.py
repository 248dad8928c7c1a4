"""Image embeddings for the audit: a pretrained backbone's pooled features, or a bundle's.

The default is MobileNetV2 with ImageNet weights at 128x128 (its 1280 pooled
features): at that size it embeds several hundred images a second on a CPU, and
copies, crops and look-alikes sit close together in its space. ``--features RUN``
uses a model bundle's own features instead (its ``features`` layer, or the input of
its last layer), with the bundle's input size, channels and resizing.
Vectors are L2-normalised, so a dot product is the cosine similarity.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from imgkit.errors import BadInputError

DEFAULT_SIZE = (128, 128)
BATCH = 64


class Embedder:
    """Turns uint8 pixel batches into unit vectors.

    Attributes:
        name: what made the vectors (part of the cache file's name).
        spec: (size, channels, resize) of the pixels it takes.
    """

    def __init__(self, model, name: str, spec: tuple, scale: bool):
        self.model = model
        self.name = name
        self.spec = spec
        self.scale = scale  # MobileNetV2's own x / 127.5 - 1; bundles scale inside

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        x = pixels.astype(np.float32)
        if self.scale:
            x = x / 127.5 - 1.0
        out = []
        for start in range(0, len(x), BATCH):
            part = x[start : start + BATCH]
            # Always one batch shape: a short last batch would retrace the graph.
            padded = np.concatenate(
                [part, np.zeros((BATCH - len(part), *part.shape[1:]), part.dtype)]
            )
            out.append(np.asarray(self.model.predict_on_batch(padded))[: len(part)])
        feats = np.concatenate(out).reshape(len(x), -1).astype(np.float32)
        norms = np.linalg.norm(feats, axis=1, keepdims=True)
        return feats / np.maximum(norms, 1e-12)


def mobilenet_embedder(weights: str = "imagenet", size: tuple[int, int] = DEFAULT_SIZE):
    """MobileNetV2 (alpha 1.0) pooled features; ``weights`` "imagenet", "none" or a file."""
    from imgkit.backend import import_keras_quietly

    import_keras_quietly()
    import keras

    from imgkit.models.backbones import load_weights_file, mobilenetv2_weights_source

    source = mobilenetv2_weights_source(weights, 3, size)
    if source is None:
        keras.utils.set_random_seed(0)  # "none": the same random network every run
    model = keras.applications.MobileNetV2(
        input_shape=(*size, 3), include_top=False, weights=None, pooling="avg"
    )
    tag = "random" if source is None else _file_tag(source)
    if source is not None:
        load_weights_file(model, source, what=f"MobileNetV2 at {size[0]}x{size[1]}")
    return Embedder(model, f"mobilenetv2-{size[0]}-{tag}", (size, 3, "stretch"), scale=True)


def bundle_embedder(run: str | os.PathLike, trust: bool | None = None) -> Embedder:
    """A model bundle's features: its ``features`` layer, else what its last layer takes."""
    import keras

    from imgkit.bundle import load_bundle
    from imgkit.models.backbones import FEATURES_LAYER

    bundle = load_bundle(run, trust=trust)
    if bundle.task != "classification":
        raise BadInputError(f"{run}: --features needs a classification bundle")
    model = bundle.model
    names = [layer.name for layer in model.layers]
    tensor = (
        model.get_layer(FEATURES_LAYER).output
        if FEATURES_LAYER in names
        else model.layers[-1].input
    )
    extractor = keras.Model(model.inputs, tensor, name="audit_features")
    spec = (bundle.input_size, bundle.channels, bundle.resize)
    name = f"bundle-{_file_tag(bundle.model_path)}"
    return Embedder(extractor, name, spec, scale=False)


def _file_tag(path: str | os.PathLike) -> str:
    """A short content tag of a weights or model file (its size and first MiB)."""
    path = Path(path)
    h = hashlib.sha256(str(path.stat().st_size).encode())
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
    return h.hexdigest()[:10]
