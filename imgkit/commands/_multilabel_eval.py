"""``imgkit eval`` for multi-label predictions: the scores, a per-label table, a gate."""

from __future__ import annotations

import json
from pathlib import Path

import click

from imgkit.commands._common import stderr_console, warn

SHOW_UNMATCHED = 3


def eval_multilabel(preds: str, truth: str, output: str | None, bars: dict[str, float]) -> None:
    """Score the predictions CSV ``preds`` (- for stdin) against the multi-label dataset
    ``truth``; print or write metrics.json and per_label.csv; apply the bars.

    Raises:
        click.BadParameter: a bar names a metric multi-label scores do not have.
        GateFailedError: a score is below its bar.
    """
    from imgkit.errors import GateFailedError
    from imgkit.evaluate.matching import read_predictions
    from imgkit.evaluate.metrics import check_gates
    from imgkit.evaluate.multilabel_eval import evaluate_multilabel, load_multilabel_truth
    from imgkit.fileio import write_csv, write_text
    from imgkit.train.multilabel_scores import GATE_METRICS

    for name in bars:
        if name not in GATE_METRICS:
            raise click.BadParameter(
                f"unknown metric {name!r} for multi-label predictions; choose from "
                f"{', '.join(GATE_METRICS)}",
                param_hint="--fail-under",
            )
    source = click.get_binary_stream("stdin") if preds == "-" else preds
    table = read_predictions(source)
    result, per_label, unmatched = evaluate_multilabel(
        table, load_multilabel_truth(truth), name=str(preds)
    )
    if unmatched:
        first = ", ".join(unmatched[:SHOW_UNMATCHED])
        more = " ..." if len(unmatched) > SHOW_UNMATCHED else ""
        warn(f"{len(unmatched)} predicted path(s) are not in the truth {truth}: {first}{more}")
    summary = {"predictions": str(preds), "truth": str(truth), **result}
    summary["unmatched"] = len(unmatched)
    _show(summary, per_label)
    text = json.dumps(summary, indent=2, ensure_ascii=False) + "\n"
    if output in (None, "-"):
        click.echo(text, nl=False)
    else:
        out = Path(output)
        out.mkdir(parents=True, exist_ok=True)
        write_csv(per_label, out / "per_label.csv")
        # metrics.json last: its presence says the folder is complete.
        click.echo(str(write_text(out / "metrics.json", text)))
    failures = check_gates(summary, bars)
    if failures:
        raise GateFailedError("quality gate failed: " + "; ".join(failures))


def _show(summary: dict, per_label) -> None:
    from rich.table import Table

    overall = Table("metric", "value", title=f"{summary['images']} images")
    for name in ("micro_f1", "macro_f1", "micro_f2", "macro_f2", "mean_f2", "mAP", "exact_match"):
        if summary.get(name) is not None:
            overall.add_row(name, f"{summary[name]:.4f}")
    labels = Table("label", "precision", "recall", "f1", "f2", "ap", "auc", "support")
    for row in per_label.itertuples(index=False):
        cells = [row.precision, row.recall, row.f1, row.f2, row.ap, row.auc]
        shown = ["" if v is None or v != v else f"{v:.4f}" for v in cells]
        labels.add_row(str(row.label), *shown, str(row.support))
    console = stderr_console()
    console.print(overall)
    console.print(labels)
