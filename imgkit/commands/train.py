"""``imgkit train``: train a registered model on a dataset folder, write a bundle."""

from __future__ import annotations

import click

from imgkit.commands._common import (
    info,
    lock_output,
    output_option,
    show_progress,
    trust_code_option,
)
from imgkit.commands._settings_options import settings_options, threshold_option


def _list_models(ctx, _param, value):
    if not value or ctx.resilient_parsing:
        return
    from imgkit.models import get_spec, list_models

    # The list is data (a user may grep it), so it goes to stdout. Parameter counts
    # come from the registry: listing builds nothing and imports no TensorFlow.
    for name in list_models():
        spec = get_spec(name)
        h, w = spec.input_size
        size = (
            f"{spec.params / 1e6:.2f}M params\t{spec.params * 4 / 1e6:.1f} MB"
            if spec.params
            else "? params\t? MB"
        )
        click.echo(
            f"{name}\t{spec.task}\t{h}x{w}x{spec.channels}\t{size}\t"
            f"batch {spec.recipe.batch_size}\t{spec.description}"
        )
    ctx.exit(0)


def _parse_devices(_ctx, _param, value):
    from imgkit.errors import BadInputError
    from imgkit.train.distribute import parse_devices

    try:
        return parse_devices(value)
    except BadInputError:
        raise click.BadParameter(f"{value!r}: expected auto or a device count, 1 or more") from None


@click.command(name="train")
@click.argument("data", type=click.Path(file_okay=False))
@output_option(required=True, help_text="The model bundle folder to write.")
@settings_options()
@threshold_option
@click.option(
    "--tensorboard",
    type=click.Path(file_okay=False),
    default=None,
    metavar="DIR",
    help="Write TensorBoard events to DIR/<-o's name>: losses, metrics and learning rate "
    "per epoch, and the model graph; --resume appends. View: tensorboard --logdir DIR",
)
@click.option(
    "--devices",
    default="auto",
    callback=_parse_devices,
    metavar="auto|N",
    show_default=True,
    help="Train data-parallel on N devices of this machine, splitting each --batch-size "
    "batch between them: the first N GPUs, or without GPUs the CPU split into N. auto: "
    "every GPU when there are several, else one device. With TF_CONFIG set for several "
    "workers, each trains and only the chief writes -o.",
)
@trust_code_option
@click.option(
    "--resume", is_flag=True, help="Continue the interrupted run in -o at its next epoch."
)
@click.option(
    "--overwrite", is_flag=True, help="Replace a bundle or interrupted run already in -o."
)
@click.option(
    "--list-models",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_list_models,
    help="List the models (name, task, default input size, parameters, MB of float32 "
    "weights, batch size, description) and exit.",
)
def command(
    data, output, threshold, tensorboard, trust_code, devices, resume, overwrite, **settings
):
    """Train a model on a dataset folder DATA and write a model bundle to -o.

    The bundle holds model.keras, imgkit.json (classes, input size, pixel scaling,
    metrics: everything predict needs), history.csv and curves.png. A checkpoint is
    written after every epoch, so an interrupted run continues with --resume (same
    settings, same result). Progress goes to stderr; the bundle path to stdout.

    A multi-label dataset (imgkit prep of path,labels or image_name,tags) trains the
    same models with one sigmoid unit per label and binary cross-entropy; one
    temperature shared by all labels and one threshold per label (--threshold) are
    fitted on val, and imgkit.json gets micro/macro F1 and F2, mAP and per-label AUC.

    \b
    Example:
        imgkit train data/fashion -o runs/fashion --model fashion-cnn
        imgkit train data/fashion -o runs/nodrop --model small-cnn --dropout 0
        imgkit train data/fashion -o runs/fashion --resume
        imgkit train data/fashion -o runs/fashion --tensorboard runs/tb
        imgkit train data/dvc -o runs/dvc --model mobilenetv2 --weights imagenet
        imgkit train data/dvc -o runs/fast --model mobilenetv2 --size 96 \\
            --fine-tune-last 0 --augment none
        imgkit train data/seg -o runs/seg --model unet-mobilenetv2 --size 128
        imgkit train data/seg -o runs/eff --model unet-mobilenetv2 --size 128 \\
            --encoder efficientnetv2-b0
        imgkit train data/mine -o runs/mine --weights runs/seed000/model.keras
        imgkit train data/fashion -o runs/fashion --model fashion-cnn --devices 2
        imgkit train data/planet -o runs/planet --model mobilenetv2 --threshold f2
    """
    from imgkit.train.distribute import writes_output
    from imgkit.train.trainer import train

    # A multi-worker run's non-chief writes nothing under -o (nor beside it).
    chief = writes_output()
    if chief:
        lock_output(output)
    # Every setting's option defaults to None: on --resume, "as the run was started";
    # only options the user typed are checked against the saved run.
    extra = []
    if tensorboard and chief:
        from imgkit.train.tensorboard import run_log_dir, tensorboard_callback

        extra.append(tensorboard_callback(run_log_dir(tensorboard, output)))

    progress = _Progress()
    try:
        meta = train(
            data,
            output,
            **settings,
            threshold=threshold,
            resume=resume,
            overwrite=overwrite,
            trust=trust_code or None,
            devices=devices,
            callbacks_extra=extra,
            on_epoch=progress.epoch,
            on_batch=progress.batch if show_progress() else None,
            on_info=info,
        )
    except KeyboardInterrupt:
        progress.close()
        info(
            f"stopped; `imgkit train {data} -o {output} --resume` "
            "continues after the last finished epoch"
        )
        raise
    finally:
        progress.close()
    for split, values in meta.get("metrics", {}).items():
        # Numbers only: a multi-label run's per-label table is in imgkit.json.
        shown = "  ".join(f"{k} {v:.4f}" for k, v in values.items() if isinstance(v, float | int))
        info(f"{split}: {shown}")
    if chief:
        click.echo(output)


class _Progress:
    """Turns training callbacks into one stderr line per epoch, plus a bar on a tty."""

    def __init__(self):
        self.bar = None

    def batch(self, epoch: int, step: int, steps: int) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=steps, desc=f"epoch {epoch}", unit="step", leave=False)
        self.bar.update(1)

    def epoch(self, report: dict) -> None:
        self.close()
        width = len(str(report["epochs"]))
        parts = [f"epoch {report['epoch']:>{width}}/{report['epochs']}"]
        for key, label in (
            ("loss", "loss"),
            ("accuracy", "acc"),
            ("val_loss", "val_loss"),
            ("val_accuracy", "val_acc"),
            ("val_iou", "val_iou"),
        ):
            if key in report:
                parts.append(f"{label} {report[key]:.4f}")
        parts.append(f"{report['seconds']:.1f}s")
        if report["improved"]:
            parts.append("*")
        if report["stopping"]:
            parts.append(f"(early stop; best epoch {report['best_epoch']})")
        info("  ".join(parts))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
