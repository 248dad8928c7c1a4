"""``imgkit train``: train a registered model on a dataset folder, write a bundle."""

from __future__ import annotations

import re

import click

from imgkit.commands._common import (
    batch_size_option,
    info,
    lock_output,
    output_option,
    seed_option,
    show_progress,
    trust_code_option,
)
from imgkit.models import AUGMENT_LEVELS


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
            f"batch {spec.batch_size}\t{spec.description}"
        )
    ctx.exit(0)


def _parse_size(_ctx, _param, value):
    if value is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", value)
    if not m:
        raise click.BadParameter(f"{value!r}: expected HxW or N (e.g. 28x28)")
    h = int(m.group(1))
    w = int(m.group(2) or h)
    if h < 1 or w < 1:
        raise click.BadParameter(f"{value!r}: sides must be positive")
    return (h, w)


def _parse_devices(_ctx, _param, value):
    from imgkit.errors import BadInputError
    from imgkit.train.distribute import parse_devices

    try:
        return parse_devices(value)
    except BadInputError:
        raise click.BadParameter(f"{value!r}: expected auto or a device count, 1 or more") from None


def _parse_fine_tune(_ctx, _param, value):
    if value is None:
        return None
    text = str(value).strip().lower()
    if text == "all":
        return -1
    try:
        n = int(text)
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected a layer count, 0, -1 or all") from None
    if n < -1:
        raise click.BadParameter(f"{value!r}: expected a layer count, 0, -1 or all")
    return n


@click.command(name="train")
@click.argument("data", type=click.Path(file_okay=False))
@output_option(required=True, help_text="The model bundle folder to write.")
@click.option(
    "--model", "model", default=None, help="Model name from the registry (see --list-models)."
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=None,
    help="Most epochs to train.  [default: 15]",
)
@batch_size_option(
    help_text="Images per training step.  "
    "[default: the model's: 128 for fashion-cnn, 512 for small-cnn]"
)
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Peak learning rate.  [default: the model's]",
)
@seed_option
@click.option(
    "--patience",
    type=click.IntRange(min=0),
    default=None,
    help="Stop after this many epochs without a better val loss (train loss "
    "without a val split); 0 never stops early. The best epoch is kept.  [default: 5]",
)
@click.option(
    "--dropout",
    type=click.FloatRange(min=0, max=1, max_open=True),
    default=None,
    help="Dropout rate; 0 removes dropout. fashion-cnn: the last layer's rate, the "
    "earlier one is 0.75 of it.  [default: the model's]",
)
@click.option(
    "--head-units",
    type=click.IntRange(min=0),
    default=None,
    help="Pretrained models: units of the new head's hidden Dense layer; 0 makes the "
    "head linear.  [default: 256]",
)
@click.option(
    "--head-epochs",
    type=click.IntRange(min=0),
    default=None,
    help="Pretrained models: most epochs the new head trains alone on cached frozen "
    "features (early stopping on val loss) before the fine-tuning; 0 skips that "
    "phase.  [default: the model's; 30 for mobilenetv2]",
)
@click.option(
    "--recipe",
    default=None,
    metavar="NAME",
    help="A model's named alternative to its defaults; mobilenetv2: seed (seed 001's "
    "one-phase fine-tuning of the last 30 layers).  Options given still win.  "
    "[default: default]",
)
@click.option(
    "--features-at",
    default=None,
    metavar="LAYER",
    help="mobilenetv2: the backbone layer pooled into the features the head reads; the "
    "backbone ends there (e.g. block_13_expand_relu, out_relu).  [default: the model's]",
)
@click.option(
    "--encoder",
    default=None,
    metavar="NAME",
    help="U-Net models: the ImageNet encoder: mobilenetv2, efficientnetv2-b0, "
    "efficientnetv2-b1, efficientnetv2-b2, efficientnetv2-b3, resnet50v2, densenet121 or "
    "mobilenetv3-large; --weights PATH is then that network's no-top file.  "
    "[default: mobilenetv2]",
)
@click.option(
    "--resize",
    type=click.Choice(["stretch", "pad", "crop"]),
    default=None,
    help="How images are fitted to the model's input size.  [default: stretch]",
)
@click.option(
    "--size",
    "--image-size",
    "input_size",
    callback=_parse_size,
    default=None,
    metavar="HxW",
    help="Input size images are resized to; N means NxN.  [default: the model's; "
    "224 for mobilenetv2, which takes 32 and up]",
)
@click.option(
    "--channels",
    type=click.Choice(["1", "3"]),
    default=None,
    help="1 grayscale, 3 RGB.  [default: the model's]",
)
@click.option(
    "--weights",
    default=None,
    metavar="imagenet|none|PATH",
    help="Pretrained models: start from ImageNet weights (Keras's cached file; "
    "downloaded if possible), none (random), or a weights file; vgg16 also takes an "
    "earlier vgg16 bundle's model.keras (a second, fine-tuning phase).  Any model: "
    "RUN/model.keras of a classification bundle (imported or trained), without --model, "
    "trains that model further at its input size, channels and pixels; its last Dense "
    "layer is replaced when DATA's classes are not the bundle's.  [default: imagenet]",
)
@click.option(
    "--fine-tune-last",
    callback=_parse_fine_tune,
    default=None,
    metavar="N|all",
    help="Pretrained models: how many of the backbone's last layers train; 0 freezes "
    "it (then the head trains on features computed once), all (or -1) trains it all. "
    "Its BatchNorm layers never train.  [default: 30 for mobilenetv2; the top block for "
    "efficientnetv2-*, resnet50v2, densenet121, mobilenetv3-large, convnext-tiny; 0 for "
    "vgg16 (4 = its block 5) and unet-mobilenetv2]",
)
@click.option(
    "--augment",
    type=click.Choice(AUGMENT_LEVELS),
    default=None,
    help="Training-time augmentation (flip: horizontal flips; shift: flips and whole-pixel "
    "shifts; light adds rotation; standard adds brightness and zoom; segmentation: flip, "
    "shift and light mirror image and mask, standard turns them by any of the square's "
    "eight symmetries).  "
    "[default: the model's]",
)
@click.option(
    "--label-smoothing",
    type=click.FloatRange(min=0, max=1, max_open=True),
    default=None,
    help="Label smoothing of the loss.  [default: the model's; 0.1 for mobilenetv2, 0 "
    "for the CNNs]",
)
@click.option(
    "--class-weight",
    type=click.Choice(["none", "balanced"]),
    default=None,
    help="balanced: weigh each class's images by n / (classes x class count).  [default: none]",
)
@click.option(
    "--mixed-precision",
    type=click.Choice(["auto", "on", "off"]),
    default=None,
    help="float16 compute (float32 weights and output); auto: on only with a GPU.  [default: auto]",
)
@click.option(
    "--calibrate/--no-calibrate",
    default=None,
    help="Fit a temperature on the val split so probabilities (and log loss) are "
    "honest; predict applies it.  [default: on]",
)
@click.option(
    "--threshold",
    default=None,
    metavar="auto|f1|balanced|none|P",
    help="Binary (sigmoid) models: the decision threshold on P(second class) that predict "
    "and tta use. f1 (= auto) or balanced: chosen on the val split to maximise F1 of the "
    "second class or balanced accuracy; P: a fixed value in (0, 1); none: 0.5.  "
    "[default: none]",
)
@click.option(
    "--loss",
    type=click.Choice(["bce", "dice", "bce+dice"]),
    default=None,
    help="Segmentation models: binary cross-entropy, Dice, or their sum.  [default: bce+dice]",
)
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
@click.pass_context
def command(
    ctx, data, output, threshold, tensorboard, trust_code, devices, resume, overwrite, **settings
):
    """Train a model on a dataset folder DATA and write a model bundle to -o.

    The bundle holds model.keras, imgkit.json (classes, input size, pixel scaling,
    metrics: everything predict needs), history.csv and curves.png. A checkpoint is
    written after every epoch, so an interrupted run continues with --resume (same
    settings, same result). Progress goes to stderr; the bundle path to stdout.

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
    """
    from click.core import ParameterSource

    from imgkit.train.distribute import writes_output
    from imgkit.train.trainer import train

    # A multi-worker run's non-chief writes nothing under -o (nor beside it).
    chief = writes_output()
    if chief:
        lock_output(output)
    # On --resume an option left at its default means "as the run was started"; only
    # options the user typed are checked against the saved run.
    for name in ("seed", "calibrate"):
        if ctx.get_parameter_source(name) is ParameterSource.DEFAULT:
            settings[name] = None
    if settings["channels"] is not None:
        settings["channels"] = int(settings["channels"])
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
        shown = "  ".join(f"{k} {v:.4f}" for k, v in values.items())
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
