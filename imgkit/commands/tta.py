"""``imgkit tta``: classify images averaged over augmented views; predict's CSV out."""

from __future__ import annotations

import click

from imgkit.commands._common import output_option, seed_option
from imgkit.commands._inference import inference_options


@click.command(name="tta")
@click.argument("run")
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "-n",
    "--views",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Views per image: the image, its mirror image, then seeded flips, shifts and "
    "zooms. 1 is plain predict.",
)
@output_option(help_text="CSV file to write (default: stdout).")
@seed_option
@inference_options(
    batch_size=32, batch_help="Images per batch (one model call sees batch-size x n views)."
)
def command(run, inputs, views, output, seed, options):
    """Classify images with RUN, each averaged over -n augmented views (test-time augmentation).

    Inputs and the CSV are those of `imgkit predict` (path,label,confidence,
    p_<class>...). View 0 is the image itself, view 1 its mirror image, and the
    others seeded combinations of a flip, a shift and a zoom of up to 10%. The
    model's probabilities are averaged over the views and the bundle's temperature
    is applied to the average. The same --seed gives the same CSV, whatever the
    --batch-size. All views of a batch go through the model in one call, so -n 10
    costs much less than ten predict runs. A multi-label bundle averages each
    label's probability over the views, tempers the average and applies each label's
    threshold (columns path,labels,p_<label>...).

    \b
    Example:
        imgkit tta runs/dvc data/dvc-test -n 10 -o tta.csv
        imgkit eval preds.csv tta.csv --truth data/dvc
        imgkit tta runs/planet data/planet-test -n 8 -o planet-tta.csv
    """
    from imgkit.commands._predictions import classify

    classify(run, inputs, output, options, views=views, seed=seed)
