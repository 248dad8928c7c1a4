"""What ``predict`` and ``tta`` share on the command side: running the bundle, writing
rows as they come, the progress bar, and the summary on stderr."""

from __future__ import annotations

import contextlib
import sys
from collections import Counter
from collections.abc import Callable, Iterator

import click

from imgkit.commands._common import info, show_progress, stderr_console, warn

# Above this many images the stderr table would drown the terminal: show counts instead.
TABLE_LIMIT = 50


def classify(run: str, inputs, output, options, views: int = 1, seed: int = 0) -> None:
    """What ``predict`` and ``tta`` do: open RUN, classify INPUTS, write the CSV."""
    from imgkit.commands._inference import open_run, stdin_for
    from imgkit.infer.run import predict_inputs

    bundle = open_run(run, ("classification", "multilabel"), options)
    stdin = stdin_for(inputs)

    def frames(on_reject):
        return predict_inputs(bundle, inputs, stdin, options, on_reject, views, seed)

    # A shard after the first writes no header, so `cat` joins the shards.
    header = options.shard is None or options.shard[0] == 1
    write_predictions(bundle.classes, frames, output, header=header, task=bundle.task)


def write_predictions(
    classes,
    make_frames: Callable[[Callable], Iterator],
    output,
    header: bool = True,
    task: str = "classification",
) -> None:
    """Stream prediction frames to ``output`` (a file, atomically, or stdout) and summarise.

    Args:
        classes: the bundle's classes, for the summary.
        make_frames: called with an ``on_reject`` callback; returns the frames.
        output: a CSV path, or None / "-" for stdout (rows written batch by batch).
        header: write the header row (a shard after the first does not); it is written
            even when no image could be predicted, so every first shard has one.
        task: "multilabel" for a multi-label bundle's columns (path,labels,p_<label>...).
    """
    from imgkit.data.images import HIDDEN_FOLDER_REASON, HIDDEN_REASON, SKIPPED
    from imgkit.fileio import atomic_open
    from imgkit.infer.predict import csv_columns, frame_to_csv

    summary = _Summary(classes, multilabel=task == "multilabel")

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

            columns = csv_columns(classes, multilabel=task == "multilabel")
            write(frame_to_csv(pd.DataFrame(columns=columns), header=True))
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

    def __init__(self, classes, multilabel: bool = False):
        self.classes = list(classes)
        self.multilabel = multilabel
        self.rows: list[tuple[str, str, float]] = []
        self.counts: Counter = Counter()
        self.total = 0
        self.skipped = 0
        self.hidden = 0

    def add(self, df) -> None:
        self.total += len(df)
        room = TABLE_LIMIT + 1 - len(self.rows)
        if self.multilabel:
            # An image counts once for each label it is given; the table shows no single
            # confidence, so the highest label probability stands in.
            self.counts.update(name for cell in df["labels"] for name in str(cell).split())
            part = df.head(max(room, 0))
            top = part[[f"p_{c}" for c in self.classes]].max(axis=1) if len(part) else []
            self.rows.extend(zip(part["path"], part["labels"], top, strict=True))
            return
        self.counts.update(df["label"])
        # Keep only what the table could show, so memory stays flat.
        if room > 0:
            part = df.head(room)
            self.rows.extend(zip(part["path"], part["label"], part["confidence"], strict=True))

    def show(self) -> None:
        from rich.table import Table

        console = stderr_console()
        if self.total <= TABLE_LIMIT:
            heads = ("labels", "top p") if self.multilabel else ("class", "confidence")
            table = Table("path", *heads)
            for path, label, conf in self.rows:
                table.add_row(path, label, f"{conf:.3f}")
            console.print(table)
        else:
            table = Table("label" if self.multilabel else "class", "images")
            for c in self.classes:
                table.add_row(c, str(self.counts.get(c, 0)))
            console.print(table)
        skipped = f", {self.skipped} skipped" if self.skipped else ""
        if self.hidden:
            skipped += f", {self.hidden} hidden or system file(s) ignored"
        info(f"{self.total} image{'s' if self.total != 1 else ''} predicted{skipped}")
