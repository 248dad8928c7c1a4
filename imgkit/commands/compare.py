"""``imgkit compare``: put several training runs side by side."""

from __future__ import annotations

from pathlib import Path

import click

from imgkit.commands._common import output_option, stderr_console


@click.command(name="compare")
@click.argument("runs", nargs=-1, required=True, type=click.Path(file_okay=False))
@output_option(required=True, help_text="Folder for curves.png and summary.csv.")
def command(runs, output):
    """Compare the model bundles RUNS: overlaid learning curves and a summary table.

    Writes DIR/curves.png (train and val loss and accuracy of every run) and
    DIR/summary.csv (model, dropout, epochs run, best epoch, final and best loss and
    accuracy, test accuracy). The table is shown on stderr; the summary path goes to
    stdout.

    \b
    Example:
        imgkit train data/fashion -o runs/drop --model small-cnn
        imgkit train data/fashion -o runs/nodrop --model small-cnn --dropout 0
        imgkit compare runs/drop runs/nodrop -o reports/dropout
    """
    from imgkit.evaluate.runs import compare_runs

    out = Path(output)
    summary = compare_runs(runs, out)
    _show(summary)
    click.echo(out / "summary.csv")


# What fits on a terminal: the CSV has every column; the table shows the ones that
# decide between runs, under short names.
_TABLE = {
    "run": "run",
    "model": "model",
    "dropout": "drop",
    "epochs_run": "epochs",
    "best_epoch": "best",
    "final_loss": "loss",
    "final_val_loss": "val_loss",
    "final_val_accuracy": "val_acc",
    "best_val_accuracy": "best_val_acc",
    "test_accuracy": "test_acc",
}


def _show(summary) -> None:
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    columns = [c for c in _TABLE if summary[c].notna().any()]
    for c in columns:
        table.add_column(_TABLE[c], justify="left" if c in ("run", "model") else "right")
    for _, row in summary.iterrows():
        table.add_row(*(_cell(row[c]) for c in columns))
    console = stderr_console()
    if not console.is_terminal:
        # A log file or a pipe has no width to fit; keep whole numbers, not ellipses.
        console.width = 200
    console.print(table)


def _cell(value) -> str:
    if isinstance(value, float):
        if value != value:  # NaN: this run lacks the value
            return ""
        return f"{value:g}" if value.is_integer() else f"{value:.3f}"
    return str(value)
