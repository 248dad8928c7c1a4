"""What ``predict`` and ``tta`` share on the command side: writing rows as they come,
the progress bar, and the summary on stderr."""

from __future__ import annotations

import contextlib
import sys
from collections import Counter
from collections.abc import Callable, Iterator

import click

from imgkit.commands._common import info, show_progress, stderr_console, warn

# Above this many images the stderr table would drown the terminal: show counts instead.
TABLE_LIMIT = 50


split_option = click.option(
    "--split",
    default=None,
    help="Which split to predict when an input is a dataset folder "
    "[default: test, or unlabeled when the dataset has no test split].",
)

invert_option = click.option(
    "--invert",
    type=click.Choice(["auto", "always", "never"]),
    default="auto",
    show_default=True,
    help="Invert images (before anything else): auto = when an image's background is the "
    "opposite of the training images' (the bundle's polarity).",
)

calibration_option = click.option(
    "--calibrated/--uncalibrated",
    default=True,
    show_default=True,
    help="Apply the temperature that train fitted on the val split (imgkit.json); "
    "--uncalibrated shows the model's raw probabilities.",
)


def use_calibration(bundle, calibrated: bool) -> None:
    """With --uncalibrated, predict with temperature 1 (the model's own probabilities)."""
    if not calibrated:
        threshold = bundle.meta.get("threshold")
        if threshold is not None:
            from imgkit.train.thresholds import raw_threshold

            # The threshold was chosen on tempered probabilities: the same labels result.
            temperature = float(bundle.meta.get("temperature") or 1.0)
            bundle.meta["threshold"] = raw_threshold(threshold, temperature)
        bundle.meta["temperature"] = 1.0


def write_predictions(
    classes, make_frames: Callable[[Callable], Iterator], output, header: bool = True
) -> None:
    """Stream prediction frames to ``output`` (a file, atomically, or stdout) and summarise.

    Args:
        classes: the bundle's classes, for the summary.
        make_frames: called with an ``on_reject`` callback; returns the frames.
        output: a CSV path, or None / "-" for stdout (rows written batch by batch).
        header: write the header row (a shard after the first does not); it is written
            even when no image could be predicted, so every first shard has one.
    """
    from imgkit.data.images import HIDDEN_FOLDER_REASON, HIDDEN_REASON, SKIPPED
    from imgkit.fileio import atomic_open
    from imgkit.infer.predict import csv_columns, frame_to_csv

    summary = _Summary(classes)

    def on_reject(r):
        # Hidden and system files (.DS_Store, Thumbs.db) were never meant as images:
        # counted, not listed one by one.
        if r.reason in (HIDDEN_REASON, HIDDEN_FOLDER_REASON):
            summary.hidden += 1
            return
        warn(f"skipped {r.path}: {r.reason.removeprefix(SKIPPED + ': ')}")
        summary.skipped += 1

    frames = make_frames(on_reject)
    to_stdout = output in (None, "-")
    with contextlib.ExitStack() as stack:
        progress = stack.enter_context(_progress())
        if to_stdout:
            write = _stdout_writer()
        else:
            f = stack.enter_context(atomic_open(output, "w", encoding="utf-8", newline=""))
            write = f.write
        first = header
        for df in frames:
            write(frame_to_csv(df, header=first))
            first = False
            summary.add(df)
            progress.update(len(df))
        if first:
            import pandas as pd

            write(frame_to_csv(pd.DataFrame(columns=csv_columns(classes)), header=True))
    summary.show()
    if not to_stdout:
        click.echo(output)


def _stdout_writer():
    def write(text: str) -> None:
        # click.echo flushes after each write: rows reach a pipe batch by batch. A
        # closed pipe (`| head`) ends the command quietly in _common.translate_errors.
        click.echo(text, nl=False)

    return write


@contextlib.contextmanager
def _progress():
    from tqdm import tqdm

    bar = tqdm(unit="img", file=sys.stderr, disable=not show_progress(), leave=False)
    try:
        yield bar
    finally:
        bar.close()


class _Summary:
    """What the user sees on stderr: a table for a few images, counts for many."""

    def __init__(self, classes):
        self.classes = list(classes)
        self.rows: list[tuple[str, str, float]] = []
        self.counts: Counter = Counter()
        self.total = 0
        self.skipped = 0
        self.hidden = 0

    def add(self, df) -> None:
        self.total += len(df)
        self.counts.update(df["label"])
        # Keep only what the table could show, so memory stays flat.
        room = TABLE_LIMIT + 1 - len(self.rows)
        if room > 0:
            part = df.head(room)
            self.rows.extend(zip(part["path"], part["label"], part["confidence"], strict=True))

    def show(self) -> None:
        from rich.table import Table

        console = stderr_console()
        if self.total <= TABLE_LIMIT:
            table = Table("path", "class", "confidence")
            for path, label, conf in self.rows:
                table.add_row(path, label, f"{conf:.3f}")
            console.print(table)
        else:
            table = Table("class", "images")
            for c in self.classes:
                table.add_row(c, str(self.counts.get(c, 0)))
            console.print(table)
        skipped = f", {self.skipped} skipped" if self.skipped else ""
        if self.hidden:
            skipped += f", {self.hidden} hidden or system file(s) ignored"
        info(f"{self.total} image{'s' if self.total != 1 else ''} predicted{skipped}")
