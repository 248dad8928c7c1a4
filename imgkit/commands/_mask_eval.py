"""``imgkit eval`` for a folder of predicted masks: per-image scores, means, a gate."""

from __future__ import annotations

import json
from pathlib import Path

import click

from imgkit.commands._common import stderr_console, warn
from imgkit.evaluate.maskeval import CLASS_METRICS, MASK_METRICS

# How many of the worst images the stderr table lists.
SHOW_WORST = 5
SHOW_UNMATCHED = 3
# The summary's means (and the median IoU), each a possible --fail-under bar.
MASK_GATES = (*MASK_METRICS, "median_iou")
CLASS_GATES = (*CLASS_METRICS, "median_iou")  # multi-class masks


def eval_masks(
    preds: str, truth: str, output: str | None, bars: dict[str, float], table=None
) -> None:
    """Score ``preds`` (mask folder) against ``truth``; write or print; apply the bars.

    ``table``: the :class:`~imgkit.data.classmasks.MaskClasses` of --mask-classes or
    --mask-colors (None: binary masks, or a dataset's recorded classes).

    Raises:
        click.BadParameter: a bar names a metric masks do not have.
        GateFailedError: a mean is below its bar.
    """
    from imgkit.errors import GateFailedError
    from imgkit.evaluate.maskeval import evaluate_masks, truth_classes
    from imgkit.evaluate.metrics import check_gates
    from imgkit.fileio import write_csv, write_text

    multiclass = bool(truth_classes(truth, table))
    gates = CLASS_GATES if multiclass else MASK_GATES
    for name in bars:
        if name not in gates:
            kind = "multi-class masks" if multiclass else "masks"
            raise click.BadParameter(
                f"unknown metric {name!r} for {kind}; choose from {', '.join(gates)}",
                param_hint="--fail-under",
            )
    report = evaluate_masks(preds, truth, table)
    if report.unmatched:
        first = ", ".join(report.unmatched[:SHOW_UNMATCHED])
        more = " ..." if len(report.unmatched) > SHOW_UNMATCHED else ""
        warn(f"{len(report.unmatched)} mask(s) have no true mask in {truth}: {first}{more}")
    for path, reason in report.unreadable:
        warn(f"{path}: {reason} (not scored)")
    if report.summary["resized"]:
        warn(
            f"{report.summary['resized']} predicted mask(s) had another size than the truth "
            "and were resized (nearest neighbour) to score them"
        )
    _show(report)
    text = json.dumps(report.summary, indent=2, ensure_ascii=False) + "\n"
    if output in (None, "-"):
        click.echo(text, nl=False)
    else:
        out = Path(output)
        out.mkdir(parents=True, exist_ok=True)
        write_csv(report.per_image, out / "per_image.csv")
        # metrics.json last: its presence says the folder is complete.
        click.echo(str(write_text(out / "metrics.json", text)))
    failures = check_gates(report.summary, bars)
    if failures:
        raise GateFailedError("quality gate failed: " + "; ".join(failures))


def _show(report) -> None:
    from rich.table import Table

    s = report.summary
    if "per_class_iou" in s:
        _show_classes(report)
        return
    overall = Table("metric", "mean", title=f"{s['n']} masks")
    for name in MASK_GATES:
        overall.add_row(name, f"{s[name]:.4f}")
    worst = Table("worst images", "iou", "dice", "pixel_accuracy")
    for row in report.per_image.head(SHOW_WORST).itertuples(index=False):
        worst.add_row(Path(row.path).name, f"{row.iou:.4f}", f"{row.dice:.4f}",
                      f"{row.pixel_accuracy:.4f}")  # fmt: skip
    console = stderr_console()
    console.print(overall)
    console.print(worst)


def _show_classes(report) -> None:
    """The per-class IoU table, the means, and the worst images (multi-class masks)."""
    from rich.table import Table

    s = report.summary
    classes = Table("class", "IoU", title=f"{s['n']} masks: mean IoU {s['mean_iou']:.4f}")
    for name, iou in s["per_class_iou"].items():
        classes.add_row(name, "-" if iou is None else f"{iou:.4f}")
    for name in CLASS_GATES:
        classes.add_row(name, f"{s[name]:.4f}", style="bold")
    worst = Table("worst images", "mean_iou", "pixel_accuracy")
    for row in report.per_image.head(SHOW_WORST).itertuples(index=False):
        worst.add_row(Path(row.path).name, f"{row.mean_iou:.4f}", f"{row.pixel_accuracy:.4f}")
    console = stderr_console()
    console.print(classes)
    console.print(worst)
