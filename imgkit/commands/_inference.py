"""The options ``predict``, ``tta`` and ``segment`` share, declared once.

:func:`inference_options` adds them to a command and hands the command one
:class:`~imgkit.infer.options.InferOptions` (``options``) in their place; the choice
lists come from the library (:mod:`imgkit.infer.options`).
"""

from __future__ import annotations

import functools
from typing import TextIO

import click

from imgkit.commands._common import batch_size_option, info, trust_code_option
from imgkit.infer.options import INVERT_MODES, RUNTIMES, InferOptions, RayOptions

split_option = click.option(
    "--split",
    default=None,
    help="Which split to read when an input is a dataset folder  [default: test, else "
    "unlabeled; for a dataset the model was not trained on, then val, then train].",
)


def _auto_choice(flag: str, choices: tuple[str, ...], help_text: str):
    """An option taking one of the library's ``choices``, "auto" unless given."""
    return click.option(
        flag, type=click.Choice(choices), default="auto", show_default=True, help=help_text
    )


invert_option = _auto_choice(
    "--invert",
    INVERT_MODES,
    "Invert images (before anything else): auto = when an image's background is the "
    "opposite of the training images' (the bundle's polarity).",
)

calibration_option = click.option(
    "--calibrated/--uncalibrated",
    default=True,
    show_default=True,
    help="Apply the temperature that train fitted on the val split (imgkit.json); "
    "--uncalibrated shows the model's raw probabilities.",
)

shard_option = click.option(
    "--shard",
    metavar="I/N",
    default=None,
    help="Take only the I-th of N contiguous slices of the inputs (in their sorted order), "
    "for a job array: the N outputs concatenated in order are the single run's "
    "(shards after the first write no CSV header, so `cat` joins them).",
)

runtime_option = _auto_choice(
    "--runtime",
    RUNTIMES,
    "Run the model with Keras (model.keras) or an export `imgkit export` made: onnx "
    "(ONNX Runtime; same probabilities to ~1e-6, several times faster on a CPU), "
    "onnx-int8, openvino (at the precision it was checked at), openvino-int8. auto: of "
    "the recorded exports whose runtime is installed and whose check kept at least 99% "
    "of Keras's labels, the one whose check ran fastest, else Keras.",
)


def _with_ray(flag: str, kind: click.ParamType, default, help_text: str):
    """A number that matters only with ``--ray``, shown with its default."""
    return click.option(
        flag, type=kind, default=default, show_default=True, help=f"With --ray: {help_text}"
    )


# --ray [ADDRESS], --workers, --gpus-per-worker: batch inference on Ray.
ray_options = (
    click.option(
        "--ray",
        "ray_address",
        is_flag=False,
        flag_value="local",
        default=None,
        metavar="[ADDRESS]",
        help="Run the batches on Ray: alone, a local Ray (or the cluster in RAY_ADDRESS); "
        "with an address (ray://host:10001, or auto), that cluster. Same output, same order. "
        "Every node must see the bundle and images at the same paths. Put it after the "
        "inputs, or write --ray=ADDRESS.",
    ),
    _with_ray(
        "--workers",
        click.IntRange(min=1),
        2,
        "how many workers (Ray actors) each load the bundle once and run batches.",
    ),
    _with_ray(
        "--gpus-per-worker",
        click.FloatRange(min=0),
        0.0,
        "GPUs each worker holds (fractions share a GPU).",
    ),
)


def inference_options(
    batch_size: int, classify: bool = True, batch_help: str = "Images per batch.", ray: bool = True
):
    """Add the shared inference options to a command; it receives them as ``options``.

    Args:
        batch_size: the command's default ``--batch-size``.
        classify: also ``--invert`` and ``--calibrated/--uncalibrated`` (classifiers only).
        batch_help: the ``--batch-size`` help.
        ray: also ``--ray``, ``--workers`` and ``--gpus-per-worker``.
    """
    shared = [split_option, batch_size_option(batch_size, help_text=batch_help)]
    if classify:
        shared += [invert_option, calibration_option]
    shared += [trust_code_option, shard_option, runtime_option, *(ray_options if ray else ())]

    def decorate(fn):
        @functools.wraps(fn)
        def command(**kwargs):
            options = _options(kwargs)  # takes the shared ones out of kwargs
            return fn(**kwargs, options=options)

        for option in reversed(shared):
            command = option(command)
        return command

    return decorate


def _options(kwargs: dict) -> InferOptions:
    """Take the shared options out of a command's ``kwargs`` as one InferOptions."""
    from imgkit.infer.inputs import parse_shard

    address = kwargs.pop("ray_address", None)
    workers, gpus = kwargs.pop("workers", 2), kwargs.pop("gpus_per_worker", 0.0)
    ray = None
    if address is not None:
        ray = RayOptions(None if address == "local" else address, workers=workers, gpus=gpus)
    return InferOptions(
        split=kwargs.pop("split"),
        batch_size=kwargs.pop("batch_size"),
        invert=kwargs.pop("invert", "auto"),
        calibrated=kwargs.pop("calibrated", True),
        shard=parse_shard(kwargs.pop("shard")),
        runtime=kwargs.pop("runtime"),
        # Without the flag, None lets IMGKIT_TRUST_CODE decide (imgkit.bundle.load_bundle).
        trust=kwargs.pop("trust_code") or None,
        ray=ray,
    )


def open_run(run: str, task: str, options: InferOptions):
    """The bundle RUN, checked for ``task``, with the runtime ``options`` choose; when
    auto chose an export, stderr says which."""
    from imgkit.bundle import load_bundle
    from imgkit.infer.runtime import use_runtime

    bundle = load_bundle(run, task=task, trust=options.trust)
    chosen = use_runtime(bundle, options.runtime)
    if options.runtime == "auto" and chosen != "keras":
        info(f"runtime {chosen} (auto: the fastest checked export; --runtime keras for Keras)")
    return bundle


def stdin_for(inputs) -> TextIO | None:
    """The stream ``-`` reads paths from, when an input is ``-``."""
    return click.get_text_stream("stdin") if "-" in inputs else None
