"""``imgkit cv``: K-fold cross-validation: fold bundles, OOF predictions, one ensemble."""

from __future__ import annotations

import click

from imgkit.commands._common import (
    info,
    lock_output,
    output_option,
    show_progress,
    stderr_console,
    trust_code_option,
)
from imgkit.commands._settings_options import settings_options, threshold_option
from imgkit.train.settings import setting_names

# Every training setting but --fold: cv trains them all.
_SETTINGS = tuple(n for n in setting_names() if n != "fold")


@click.command(name="cv")
@click.argument("data", type=click.Path(file_okay=False))
@output_option(required=True, help_text="The cross-validation folder to write (or resume).")
@click.option(
    "--folds",
    type=click.IntRange(min=2),
    default=None,
    metavar="K",
    help="How many folds. DATA with folds (prep --folds): its own, which K must match if "
    "given. DATA without: required; DATA's images are given K folds in -o/data "
    "(stratified by class, or by every label at once for multi-label data; groups whole; "
    "seeded by --seed; DATA's test split stays out).",
)
@settings_options(*_SETTINGS)
@threshold_option
@trust_code_option
@click.option("--overwrite", is_flag=True, help="Delete what -o holds and train every fold again.")
def command(data, output, folds, threshold, trust_code, overwrite, **settings):
    """Cross-validate: train one model per fold, score every image out of fold.

    Fold k is an ordinary `imgkit train DATA --fold k` run into -o/fold-k, trained on
    the other folds and validated (early stopping, calibration, threshold) on fold k.
    The folds run one after another and the folder resumes: run the same command
    again after an interruption (even kill -9) and finished folds are kept, an
    interrupted one continues from its last epoch, and the result is the same. Folds
    trained elsewhere (a job array of `imgkit train DATA -o CV/fold-k --fold k`) are
    taken as they are, once checked against DATA and the settings given.

    Then -o gets oof.csv (predict's columns; each image predicted by the one fold model
    that did not train on it, with one temperature fitted on all of them), cv.json
    (each fold's metrics, mean and standard deviation, the OOF scores and, when DATA has
    a test split, the fold ensemble's test scores), curves.png (every fold's curves)
    and imgkit.json: the folder is then a bundle that predict, tta and segment take,
    averaging the K models' probabilities and applying the OOF temperature once.

    Multi-label data: oof.csv has predict's multi-label columns (path, labels,
    p_<label>...), the scores are micro/macro F1 and F2, mean F2 and mAP, and the
    ensemble's per-label thresholds (--threshold's metric, F1 by default) are fitted on
    all the OOF predictions, with one temperature shared by the labels.

    Training options are imgkit train's, the same for every fold.

    \b
    Example:
        imgkit cv data/dvc -o cv/dvc --folds 5 --model mobilenetv2 --size 96
        imgkit cv data/dvc5 -o cv/dvc                # DATA already has folds
        imgkit predict cv/dvc data/dvc-test -o preds.csv   # the 5 models averaged
    """
    from imgkit.commands.train import _Progress
    from imgkit.evaluate.crossval import CvHooks, cross_validate

    lock_output(output)
    progress = _Progress()

    def on_fold(k: int, n: int, state: str) -> None:
        progress.close()
        info(f"fold {k}/{n}: {state}")

    hooks = CvHooks(
        on_fold=on_fold,
        on_info=info,
        train={
            "on_epoch": progress.epoch,
            "on_batch": progress.batch if show_progress() else None,
        },
    )
    try:
        report = cross_validate(
            data,
            output,
            folds,
            threshold=threshold,
            overwrite=overwrite,
            trust=trust_code or None,
            hooks=hooks,
            **settings,
        )
    finally:
        progress.close()
    _table(report)
    click.echo(output)


def _table(report: dict) -> None:
    """Each fold's val metrics, their mean and standard deviation, OOF and test, on stderr."""
    from rich.table import Table

    rows = report["per_fold"]
    keys = [k for k in report["mean"] if k.startswith("val_") and k != "val_images"][:5]
    table = Table(title=f"{report['folds']}-fold cross-validation")
    for name in ("fold", "best epoch", *keys):
        table.add_column(name, justify="right")
    for row in rows:
        cells = [_cell(row.get(k)) for k in keys]
        table.add_row(str(row["fold"]), str(row.get("best_epoch")), *cells)
    table.add_row("mean", "", *(_cell(report["mean"][k]) for k in keys), style="bold")
    table.add_row("std", "", *(_cell(report["std"][k]) for k in keys))
    console = stderr_console()
    console.print(table)
    for part in ("oof", "test"):
        if part in report:
            shown = "  ".join(
                f"{k} {_cell(v)}"
                for k, v in report[part].items()
                if not isinstance(v, (list, dict))
            )
            what = "out of fold" if part == "oof" else "test, folds averaged"
            console.print(f"{what}: {shown}", soft_wrap=True)
    if report.get("temperature") is not None:
        console.print(f"temperature {report['temperature']:g} (fitted on the OOF predictions)")


def _cell(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
