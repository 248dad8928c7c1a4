"""``imgkit tta``: classify images averaged over augmented views; predict's CSV out."""

from __future__ import annotations

import contextlib

import click

from imgkit.commands._common import batch_size_option, output_option, seed_option, warn


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
@click.option(
    "--split",
    default="test",
    show_default=True,
    help="Which split to predict when an input is a dataset folder.",
)
@batch_size_option(32, help_text="Images per batch (one model call sees batch-size x n views).")
@click.option(
    "--invert",
    type=click.Choice(["auto", "always", "never"]),
    default="auto",
    show_default=True,
    help="Invert images (before augmenting): auto = when an image's background is the "
    "opposite of the training images'.",
)
@seed_option
def command(run, inputs, views, output, split, batch_size, invert, seed):
    """Classify images with RUN, each averaged over -n augmented views (test-time augmentation).

    Inputs and the CSV are those of `imgkit predict` (path,label,confidence,
    p_<class>...). View 0 is the image itself, view 1 its mirror image, and the
    others seeded combinations of a flip, a shift and a zoom of up to 10%. The
    model's probabilities are averaged over the views and the bundle's temperature
    is applied to the average. The same --seed gives the same CSV, whatever the
    --batch-size. All views of a batch go through the model in one call, so -n 10
    costs much less than ten predict runs.

    \b
    Example:
        imgkit tta runs/dvc data/dvc-test -n 10 -o tta.csv
        imgkit eval preds.csv tta.csv --truth data/dvc
    """
    from imgkit.bundle import load_bundle
    from imgkit.commands.predict import _progress, _stdout_writer, _Summary
    from imgkit.fileio import atomic_open
    from imgkit.images import HIDDEN_FOLDER_REASON, HIDDEN_REASON, SKIPPED
    from imgkit.predict import frame_to_csv
    from imgkit.tta import tta_inputs

    bundle = load_bundle(run, task="classification")
    stdin = click.get_text_stream("stdin") if "-" in inputs else None
    summary = _Summary(bundle.classes)

    def on_reject(r):
        # As in predict: hidden and system files are counted, not listed.
        if r.reason in (HIDDEN_REASON, HIDDEN_FOLDER_REASON):
            summary.hidden += 1
            return
        warn(f"skipped {r.path}: {r.reason.removeprefix(SKIPPED + ': ')}")
        summary.skipped += 1

    frames = tta_inputs(
        bundle, inputs, stdin, split, views, seed, batch_size, invert, on_reject=on_reject
    )
    to_stdout = output in (None, "-")
    with contextlib.ExitStack() as stack:
        progress = stack.enter_context(_progress())
        if to_stdout:
            write = _stdout_writer()
        else:
            f = stack.enter_context(atomic_open(output, "w", encoding="utf-8", newline=""))
            write = f.write
        first = True
        for df in frames:
            write(frame_to_csv(df, header=first))
            first = False
            summary.add(df)
            progress.update(len(df))
    summary.show()
    if not to_stdout:
        click.echo(output)
