"""``imgkit report``: one static HTML page about a bundle, to open or send."""

from __future__ import annotations

import click

from imgkit.commands._common import info, lock_output, output_option, trust_code_option


@click.command(name="report")
@click.argument("run")
@output_option(required=True, help_text="Folder for index.html and its images (made if missing).")
@click.option(
    "--predictions",
    default=None,
    metavar="CSV",
    help="A predictions CSV of RUN (imgkit predict, with its default --calibrated; a "
    "multi-label bundle's path,labels,p_<label>...) to show against --truth  [default: RUN "
    "predicts the --truth dataset's split itself].",
)
@click.option(
    "--truth",
    default=None,
    metavar="DATA",
    help="The true labels or masks: a dataset folder (or, for a classifier, a CSV of "
    "path,label). Without it the page holds the run's settings, curves and metrics only.",
)
@click.option(
    "--split",
    default=None,
    help="Which split of --truth RUN runs on when no --predictions are given  [default: "
    "test, else unlabeled; for a dataset RUN was not trained on, then val, then train].",
)
@trust_code_option
def command(run, output, predictions, truth, split, trust_code):
    """Write one static HTML page about the bundle RUN into -o (index.html + images/).

    The page holds the run's settings and data counts, its training curves and
    metrics and, with --truth: for a classifier the confusion matrix (each cell links
    to its images), the top losses (most confident mistakes) with heatmaps of where
    the model looked (imgkit explain's default method), the most confused class pairs
    side by side, a reliability diagram before and after the temperature and, for two
    classes, precision and recall against the decision threshold; for a multi-label
    classifier a per-label precision/recall/F1 table, the top losses (largest summed
    per-label log loss) with their missed and extra labels and a heatmap of the worst
    wrong one, the most confused label pairs and a reliability diagram of every
    (image, label) probability pooled, before and after the temperature; for a
    segmenter the worst images as
    image / true mask / predicted mask / overlay panels.

    The page needs no server, no network and no JavaScript: open it from the file, or
    send the folder. Every path and class name from your files is shown as text.
    Prints the page's path.

    \b
    Example:
        imgkit report runs/garments -o report/ --truth data/garments
        imgkit report runs/garments -o report/ --predictions preds.csv --truth data/garments
        imgkit report runs/nuclei -o report/ --truth data/nuclei --split val
        imgkit report runs/planet -o report/ --truth data/planet
    """
    from imgkit.commands._inference import open_run
    from imgkit.evaluate.report import build_report
    from imgkit.infer.options import InferOptions

    lock_output(output)
    bundle = open_run(run, None, InferOptions(trust=trust_code or None, runtime="keras"))
    page = build_report(bundle, output, predictions, truth, split)
    info(f"report for {run} written")
    click.echo(str(page))
