"""``imgkit predict``: classify images with a model bundle; CSV out."""

from __future__ import annotations

import click

from imgkit.commands._common import output_option
from imgkit.commands._inference import inference_options


@click.command(name="predict")
@click.argument("run")
@click.argument("inputs", nargs=-1, required=True)
@output_option(help_text="CSV file to write (default: stdout).")
@inference_options(batch_size=64)
def command(run, inputs, output, options):
    """Classify images with the model bundle RUN; one CSV row per image.

    INPUTS are image files, folders (walked recursively, in sorted order), dataset
    folders (their --split), or - to read paths from stdin, one per line. Every
    image is converted to what the model expects (size, channels, resize mode,
    orientation) as recorded in RUN/imgkit.json.

    The CSV has the columns path,label,confidence,p_<class>... (classes in the
    bundle's order), streamed to stdout, or with -o written atomically to a file
    whose path is then printed. A short table goes to stderr. Unreadable files are
    reported on stderr and skipped; the exit status is 1 only if no image could be
    predicted.

    A multi-label bundle writes path,labels,p_<label>...: labels holds every label
    whose probability reaches its threshold (fitted at training), space-separated,
    and is empty when none does.

    A bundle whose model contains code (a Lambda layer) is refused unless
    --trust-code is given: that code would run as the model loads.

    \b
    Example:
        imgkit predict runs/fashion photos/ -o preds.csv
        imgkit predict runs/fashion data/fashion --split test > test_preds.csv
        find shots -name '*.jpg' | imgkit predict runs/fashion - | head
        imgkit predict runs/fashion big/ --shard 2/8 -o preds.2.csv   # a job array
        imgkit predict runs/fashion big/ -o preds.csv --workers 8 --ray ray://head:10001
        imgkit predict runs/planet data/planet-test -o planet.csv   # path,labels,p_...
    """
    from imgkit.commands._predictions import classify

    classify(run, inputs, output, options)
