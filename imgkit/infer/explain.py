"""``explain``: where in each image a classifier found the class it chose.

Images are read and batched by the same input plan and engine as ``predict``
(:func:`imgkit.infer.plan.plan_inputs`, :func:`imgkit.infer.engine.local_batches`): a
shard, a dataset's split, rejects and the bundle's preprocessing are the same rules.
Each batch is classified as ``predict`` would (calibrated, with the bundle's threshold)
and a heatmap is made for the chosen class (or the ones asked for) by one of
:data:`METHODS`. A multi-label bundle gets one heatmap per label it decides present
(each label's tempered probability at or above that label's threshold, as ``predict``
decides; the most probable label when none is), each measuring that label's own
logit, the sigmoid's pre-activation.

- occlusion: squares of the image blurred, slid over it; a pixel matters as much as
  hiding it lowers the class's logit, summed over the squares that hid it. Needs only
  forward passes, so it runs on any bundle and runtime (ONNX too); on real garments
  pasted into clutter it put its peak on the object most often (85-92% of images at
  four scene seeds of benchmarks/bench_explain.py), so it is the default.
- gradcam: Grad-CAM on the last spatial feature map (:mod:`imgkit.infer.cam`).
- layercam: LayerCAM on the same map, position by position.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TextIO

import numpy as np

from imgkit.data.records import Reject
from imgkit.errors import BadInputError
from imgkit.infer.engine import Decoder, local_batches
from imgkit.infer.inputs import Tally
from imgkit.infer.options import InferOptions
from imgkit.infer.plan import Item, plan_inputs
from imgkit.infer.predict import Predictor

METHODS = ("occlusion", "gradcam", "layercam")
DEFAULT_METHOD = "occlusion"
# Methods that follow gradients through the Keras model (not ONNX Runtime).
GRADIENT_METHODS = ("gradcam", "layercam")
# Occluded copies of an image per model call.
OCCLUSION_BATCH = 128


@dataclass(frozen=True)
class ExplainOptions:
    """What to explain and how.

    Attributes:
        method: one of :data:`METHODS`.
        targets: the classes (labels) to explain for every image; empty: each image's
            predicted class, or a multi-label bundle's decided labels.
        layer: the layer gradient methods read; None: the last spatial feature map.
    """

    method: str = DEFAULT_METHOD
    targets: tuple[str, ...] = ()
    layer: str | None = None

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS} (got {self.method!r})")


@dataclass
class Explained:
    """One image's explanation (of one of its labels, for a multi-label bundle).

    Attributes:
        item: the planned image.
        label: the predicted class; ``confidence`` its probability. Multi-label: the
            decided labels, space-separated (maybe none), and the probability of exactly
            that set, the labels taken as independent.
        target: the class the map is for; ``target_proba`` its probability.
        heat: the map at the model's input size, (h, w) in [0, 1], 1 = most important.
    """

    item: Item
    label: str
    confidence: float
    target: str
    target_proba: float
    heat: np.ndarray


def occlusion_geometry(size: tuple[int, int]) -> tuple[tuple[int, int], int, float]:
    """(square sides, stride, blur) in pixels for a model input of (height, width)
    ``size``: squares a sixth and a quarter of the short side, moved a twelfth of it,
    filled with the image blurred by a Gaussian of that twelfth ((16, 24), 8 and 8 at
    96 px): about 220 forward passes per image at any input size."""
    short = min(size)
    return (
        (max(1, round(short / 6)), max(1, round(short / 4))),
        max(1, round(short / 12)),
        short / 12,
    )


def _starts(length: int, patch: int, stride: int) -> list[int]:
    starts = list(range(0, max(1, length - patch + 1), stride))
    if starts[-1] + patch < length:  # the last row or column is covered too
        starts.append(length - patch)
    return starts


def class_logit(proba: np.ndarray, target: int) -> np.ndarray:
    """The centred logit of class ``target`` from (n, k) probabilities (a softmax's, or
    the two columns of a sigmoid's): ``log p_t - mean_j log p_j``.

    Occlusion measures drops in this, not in the probability: a confident model's
    probability sits at 1.0 whatever is hidden, while its logit still moves.
    """
    logp = np.log(np.clip(np.asarray(proba, dtype=np.float64), 1e-300, 1.0))
    return logp[:, target] - logp.mean(axis=1)


def label_logit(proba: np.ndarray, target: int) -> np.ndarray:
    """Label ``target``'s own logit from (n, k) multi-label probabilities (one sigmoid
    per label): ``log p_t - log(1 - p_t)``, the sigmoid's pre-activation. The other
    labels do not enter: each label is its own yes/no question."""
    p = np.asarray(proba, dtype=np.float64)[:, target]
    return np.log(np.clip(p, 1e-300, 1.0)) - np.log(np.clip(1.0 - p, 1e-300, 1.0))


def occlusion_map(
    proba: Callable[[np.ndarray], np.ndarray], image: np.ndarray, target: int, base: float
) -> np.ndarray:
    """How much hiding each part of ``image`` lowers class ``target``'s logit from
    ``base`` (:func:`class_logit`); :func:`occlusion_maps` for one class."""
    return occlusion_maps(proba, image, [target], [base])[0]


def occlusion_maps(
    proba: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    targets: Sequence[int],
    bases: Sequence[float],
    logit: Callable[[np.ndarray, int], np.ndarray] = class_logit,
) -> np.ndarray:
    """(len(targets), h, w): how much hiding each part of ``image`` lowers each class
    ``targets[j]``'s ``logit`` from ``bases[j]``. The occluded copies are made and run
    once, whatever the number of classes.

    Every position of a square (:func:`occlusion_geometry`) is one copy of the image
    with that square replaced by the same place of a blurred copy: the local colour
    stays, the shape goes (a grey square is itself a shape the model reacts to, and
    put the peak on the object for 57% of 60 held-out scenes of
    benchmarks/bench_explain.py, the blurred square for 72%).
    A pixel's value is the total drop of every square, of either size, that covered
    it (rises, evidence against the class, counted as 0), smoothed by half the stride:
    the squares hiding the object all drop, so the sum peaks where they overlap, in
    the middle of the evidence. The mean over the covering squares, used before, gives
    a pixel that one square alone covered (the border, a last row) that square's whole
    drop, as much as the middle of the evidence where every square dropped: it put the
    peak on the object for 79% and 81% of the benchmark's test images at two scene
    seeds, the sum for 92% and 89%, with the same forward passes.
    """
    from imgkit.infer.heatmap import gaussian_blur

    h, w = image.shape[:2]
    sides, stride, sigma = occlusion_geometry((h, w))
    fill = np.round(gaussian_blur(image, sigma)).astype(image.dtype)
    total = np.zeros((len(targets), h, w), dtype=np.float64)
    for patch in sides:
        boxes = [(t, le) for t in _starts(h, patch, stride) for le in _starts(w, patch, stride)]
        drops = []
        for first in range(0, len(boxes), OCCLUSION_BATCH):
            chunk = boxes[first : first + OCCLUSION_BATCH]
            copies = np.repeat(image[None], len(chunk), axis=0)
            for k, (t, le) in enumerate(chunk):
                copies[k, t : t + patch, le : le + patch] = fill[t : t + patch, le : le + patch]
            p = proba(copies)
            lowered = [b - logit(p, c) for c, b in zip(targets, bases, strict=True)]
            drops.append(np.stack(lowered, axis=1))
        for (t, le), drop in zip(boxes, np.concatenate(drops), strict=True):
            for j, d in enumerate(drop):
                total[j, t : t + patch, le : le + patch] += max(float(d), 0.0)
    return np.stack([gaussian_blur(m, stride / 2) for m in total])


class Explainer:
    """A classification bundle's predictions and heatmaps for batches of images.

    Args:
        bundle: a loaded classification (or multi-label) Bundle (its Keras model for
            gradient methods).
        how: the method, classes and layer.
        calibrated: labels and confidences with the bundle's temperature.

    Raises:
        BadInputError: a class of ``how.targets`` is not one of the bundle's classes.
        BadBundleError: a gradient method and no spatial layer (or no such ``layer``).
    """

    def __init__(self, bundle, how: ExplainOptions = ExplainOptions(), calibrated: bool = True):
        self.bundle = bundle
        self.how = how
        self.predictor = Predictor(bundle, calibrated)
        self.classes = self.predictor.classes
        self.multilabel = self.predictor.multilabel
        # A multi-label head answers each label on its own: its own logit is the score.
        self.logit = label_logit if self.multilabel else class_logit
        for target in how.targets:
            if target not in self.classes:
                kind = "label" if self.multilabel else "class"
                raise BadInputError(
                    f"--class {target!r} is not a {kind} of {bundle.path} "
                    f"(its {kind}{'es' if kind == 'class' else 's'}: {', '.join(self.classes)})"
                )
        self.layer = None
        if how.method in GRADIENT_METHODS:
            from imgkit.infer.cam import find_layer

            self.layer = find_layer(bundle.model, how.layer, where=str(bundle.path))

    def heatmaps(self, arrays: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """(n, h, w) maps in [0, 1] of class ``targets[i]`` for uint8 image ``arrays[i]``."""
        return np.stack([m[0] for m in self.maps(arrays, [[int(t)] for t in targets])])

    def maps(self, arrays: np.ndarray, targets: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """For each uint8 image ``arrays[i]``, (len(targets[i]), h, w) maps in [0, 1] of
        its classes ``targets[i]`` (occlusion runs an image's copies once for all)."""
        from imgkit.infer.heatmap import normalise

        if self.layer is None:
            raw = self.predictor.raw_proba
            out = []
            for a, p, ts in zip(arrays, raw(arrays), targets, strict=True):
                bases = [float(self.logit(p[None], t)[0]) for t in ts]
                heat = occlusion_maps(raw, a, [int(t) for t in ts], bases, self.logit)
                out.append(np.stack([normalise(m) for m in heat]))
            return out
        pairs = [(i, int(t)) for i, ts in enumerate(targets) for t in ts]
        cams = self._cam(arrays[[i for i, _ in pairs]], np.array([t for _, t in pairs]))
        bounds = np.cumsum([0, *[len(ts) for ts in targets]])
        return [cams[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def _cam(self, arrays: np.ndarray, targets: np.ndarray) -> np.ndarray:
        from imgkit.infer.cam import gradcam, layer_gradients, layercam
        from imgkit.infer.heatmap import normalise, resize_map

        onehot = np.eye(len(self.classes), dtype=np.float32)[targets]
        acts, grads = layer_gradients(
            self.bundle.model, self.layer, arrays, onehot, self.bundle.output
        )
        cams = (gradcam if self.how.method == "gradcam" else layercam)(acts, grads)
        h, w = arrays.shape[1:3]
        return np.stack([normalise(resize_map(c, (w, h))) for c in cams])

    def decide(self, items: list[Item], proba: np.ndarray):
        """Each image's label text, its confidence and the classes to explain (indices):
        the predicted class; a multi-label bundle's decided labels (predict's rows), or
        its most probable label when none is decided; ``how.targets`` when given."""
        from imgkit.data.dataset import label_set

        rows = self.predictor.rows([i.path for i in items], proba)
        if self.multilabel:
            labels = list(rows["labels"])
            chosen = [[self.classes.index(c) for c in label_set(t)] for t in labels]
            decided = np.zeros(proba.shape, dtype=bool)
            for i, js in enumerate(chosen):
                decided[i, js] = True
            # The chance of exactly the decided set, each label its own yes/no.
            confidence = np.where(decided, proba, 1.0 - proba).prod(axis=1)
            chosen = [js or [int(p.argmax())] for js, p in zip(chosen, proba, strict=True)]
        else:
            labels = list(rows["label"])
            chosen = [[self.classes.index(label)] for label in labels]
            confidence = proba[np.arange(len(items)), [c[0] for c in chosen]]
        if self.how.targets:
            asked = [self.classes.index(t) for t in dict.fromkeys(self.how.targets)]
            chosen = [asked] * len(items)
        return labels, confidence, chosen

    def explain(self, items: list[Item], arrays: np.ndarray) -> list[Explained]:
        """Predict a batch and explain each image's class (or the asked-for ones): one
        Explained per image and class, in image order."""
        proba = self.predictor.proba(arrays)
        labels, confidence, chosen = self.decide(items, proba)
        maps = self.maps(arrays, chosen)
        return [
            Explained(
                item,
                labels[i],
                float(confidence[i]),
                self.classes[t],
                float(proba[i, t]),
                maps[i][j],
            )
            for i, item in enumerate(items)
            for j, t in enumerate(chosen[i])
        ]


def explain_inputs(
    bundle,
    inputs: Iterable[str | os.PathLike],
    stdin: TextIO | None = None,
    options: InferOptions = InferOptions(batch_size=16),
    how: ExplainOptions = ExplainOptions(),
    on_reject: Callable[[Reject], None] | None = None,
) -> Iterator[Explained]:
    """Explain everything the command line names, in order, a batch at a time.

    Args:
        bundle: a loaded classification Bundle.
        inputs: files, folders, dataset folders or ``-`` (:func:`plan_inputs`).
        stdin: where ``-`` reads paths from.
        options: split, batch size, inversion, calibration, shard, threads (not Ray).
        how: the method, class and layer.
        on_reject: called with a Reject for each input that cannot be read.

    Raises:
        BadInputError: not a single image could be read; ``options.ray`` is set.
    """
    if options.ray is not None:
        raise BadInputError("explain runs in this process; --ray is not available for it")
    explainer = Explainer(bundle, how, options.calibrated)
    tally = Tally(on_reject)
    plan = plan_inputs(bundle, inputs, stdin, options.split, options.shard)
    decoder = Decoder(bundle, options.invert)
    for batch in local_batches(decoder, plan, options.batch_size, options.threads, tally):
        tally.read += len(batch.items)
        yield from explainer.explain(batch.items, batch.arrays)
    tally.check("explained", options.shard)
