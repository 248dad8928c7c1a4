"""How ``predict``, ``tta`` and ``segment`` run: one frozen value for the options they share.

The commands build an :class:`InferOptions` from their shared click options (one
decorator, :mod:`imgkit.commands._inference`) and library functions take it whole, so
a new option is added in one place. The choice lists the options offer live here too,
and nothing here imports numpy or TensorFlow: a command's ``--help`` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass

# How to treat an image's background before a classifier sees it (imgkit.infer.inversion).
INVERT_MODES = ("auto", "always", "never")
# Which engine runs the model (imgkit.infer.runtime): Keras, or an export of the bundle
# by its name in imgkit.json (ONNX Runtime for the onnx ones, OpenVINO for the others).
EXPORT_RUNTIMES = ("onnx", "onnx-int8", "openvino", "openvino-int8")
RUNTIMES = ("auto", "keras", *EXPORT_RUNTIMES)


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide to run on Ray: ``address`` None starts a local Ray (or joins
    ``RAY_ADDRESS`` when set); ``workers`` actors, each with ``gpus`` GPUs."""

    address: str | None = None
    workers: int = 2
    gpus: float = 0.0


@dataclass(frozen=True)
class InferOptions:
    """The options every inference command shares.

    Attributes:
        split: the split of dataset folders; None: :func:`imgkit.infer.plan.default_split`.
        batch_size: images per model call (``tta``: images per batch, each with its views).
        invert: classification: "auto" (by the bundle's polarity), "always" or "never".
        calibrated: classification: apply the bundle's temperature (and its threshold as
            chosen on tempered probabilities); False gives the model's own probabilities.
        shard: ``(i, n)``: only the i-th of n contiguous slices of the inputs, in order.
        runtime: "auto", "keras" or an export's name, such as "onnx" or "openvino"
            (:func:`imgkit.infer.runtime.use_runtime`).
        trust: run a bundle's code (Lambda layers); None: as ``IMGKIT_TRUST_CODE`` says.
        threads: decoding threads in this process (default: up to 4).
        ray: run the batches on Ray with these options; None: in this process.
    """

    split: str | None = None
    batch_size: int = 64
    invert: str = "auto"
    calibrated: bool = True
    shard: tuple[int, int] | None = None
    runtime: str = "auto"
    trust: bool | None = None
    threads: int | None = None
    ray: RayOptions | None = None

    def __post_init__(self):
        if self.invert not in INVERT_MODES:
            raise ValueError(f"invert must be one of {INVERT_MODES} (got {self.invert!r})")
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES} (got {self.runtime!r})")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1 (got {self.batch_size})")


@dataclass(frozen=True)
class Work:
    """What the model computes per batch, beyond one plain pass.

    Attributes:
        views: classification: views per image, averaged (test-time augmentation);
            1 is plain prediction.
        seed: chooses the views after the first two (:func:`imgkit.infer.tta.view_params`).
        flip: segmentation: also run each image mirrored and average the maps.
    """

    views: int = 1
    seed: int = 0
    flip: bool = False

    def __post_init__(self):
        if self.views < 1:
            raise ValueError(f"views must be at least 1 (got {self.views})")
