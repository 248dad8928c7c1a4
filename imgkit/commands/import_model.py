"""``imgkit import``: a Keras model made elsewhere becomes a model bundle."""

from __future__ import annotations

from pathlib import Path

import click

from imgkit.commands._common import info, lock_output, output_option, trust_code_option
from imgkit.commands._settings_options import parse_size
from imgkit.data.images import CHANNELS, RESIZE_MODES
from imgkit.data.polarity import POLARITIES
from imgkit.models.foreign import ACTIVATIONS, IMPORT_TASKS, PIXEL_RANGES


def _parse_classes(_ctx, _param, value):
    """``a,b,c``, or the path of a file with one class name per line."""
    if value is None:
        return None
    path = Path(value)
    if "," not in value and path.is_file():
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise click.BadParameter(f"{value}: cannot read ({e})") from None
        return [line.strip() for line in lines if line.strip()]
    return [name.strip() for name in value.split(",")]


@click.command(name="import")
@click.argument("model", type=click.Path(exists=True))
@output_option(required=True, help_text="The model bundle folder to write.")
@click.option(
    "--classes",
    callback=_parse_classes,
    default=None,
    metavar="A,B,...|FILE",
    help="Class names in the model's output order: a comma list or a file with one per "
    "line. Required for classify; a 1-unit sigmoid model has 2 (it gives P(second)).",
)
@click.option(
    "--pixels",
    type=click.Choice(list(PIXEL_RANGES)),
    required=True,
    help="The pixel range the model was trained on (x/255, x/127.5-1, raw, or caffe: "
    "BGR minus the ImageNet means). The scaling goes inside the bundle's model.",
)
@click.option(
    "--task",
    type=click.Choice(list(IMPORT_TASKS)),
    default="classify",
    show_default=True,
    help="classify: (batch, classes) output; segment: a (batch, h, w, 1) mask.",
)
@click.option(
    "--size",
    "input_size",
    callback=parse_size,
    default=None,
    metavar="HxW",
    help="Input size, when the model leaves it open (or takes flat pixels); N means NxN.",
)
@click.option(
    "--channels",
    type=click.Choice([str(c) for c in CHANNELS]),
    default=None,
    help="1 grey or 3 RGB, when the model leaves it open (or takes flat pixels).",
)
@click.option(
    "--polarity",
    type=click.Choice(POLARITIES),
    default="none",
    show_default=True,
    help="The training images' background. dark (light things on black, like "
    "Fashion-MNIST): predict inverts photos on a light background; none: never.",
)
@click.option(
    "--resize",
    type=click.Choice(RESIZE_MODES),
    default="stretch",
    show_default=True,
    help="How predict fits images to the input size.",
)
@click.option(
    "--activation",
    type=click.Choice(ACTIVATIONS),
    default=None,
    help="What the model's last layer gives, if imgkit reads it wrong: linear means "
    "logits (a softmax or sigmoid is added).  [default: read from the last layer]",
)
@trust_code_option
@click.option("--overwrite", is_flag=True, help="Replace a bundle already in -o.")
def command(
    model,
    output,
    classes,
    pixels,
    task,
    input_size,
    channels,
    polarity,
    resize,
    activation,
    trust_code,
    overwrite,
):
    """Turn MODEL, a Keras model made elsewhere, into a model bundle in -o.

    MODEL is a .keras file, a legacy .h5 (Keras 2's model.save) or a SavedModel
    folder. What the file cannot say is given: the class names, the pixel range it
    was trained on, the background polarity. The bundle's model takes raw 0-255
    pixels like imgkit's own (the scaling goes inside it, a (h, w) or flat input gets
    a reshape, logits get a softmax), so predict, tta, eval and export use it
    unchanged. The classes must match the output (k softmax units, or 1 sigmoid unit
    for 2 classes). A model with code in it (Lambda layers, a SavedModel's graph) is
    refused unless --trust-code; a SavedModel is copied into the bundle, which then
    loads only with --trust-code and must stay where it is. The bundle path goes to
    stdout.

    \b
    Example:
        imgkit import fashion_mnist_model.h5 -o runs/seed000 \\
            --classes classes.txt --pixels 0-1 --polarity dark
        imgkit predict runs/seed000 photos/
        imgkit import unet.keras -o runs/seg --task segment --pixels -1-1
    """
    from imgkit.train.importing import import_model

    lock_output(output)
    meta = import_model(
        model,
        output,
        classes=classes,
        pixels=pixels,
        task=task,
        size=input_size,
        channels=int(channels) if channels else None,
        polarity=polarity,
        resize=resize,
        activation=activation,
        trust=trust_code or None,
        overwrite=overwrite,
    )
    h, w = meta["input_size"]
    done = meta["imported"]
    added = f", added a {done['added']}" if done.get("added") else ""
    info(
        f"imported {done['format']} model: {h}x{w}x{meta['channels']} input, pixels "
        f"{pixels}, {done['outputs']} output(s) ({done['activation']}, from the "
        f"{done['activation_from']}{added}); classes {', '.join(meta['classes'])}"
    )
    click.echo(output)
