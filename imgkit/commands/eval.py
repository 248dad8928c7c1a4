"""``imgkit eval``: score predictions against the truth (metrics, confusion matrix)."""

from __future__ import annotations

import json

import click

from imgkit.commands._common import output_option, parse_key_values, stderr_console, warn

# How many unmatched paths a warning names before it just counts.
SHOW_UNMATCHED = 3


@click.command(name="eval")
@click.argument("preds", nargs=-1, required=True)
@click.option(
    "--truth",
    required=True,
    help="The true labels: a dataset folder, or a CSV with path,label columns. For a "
    "folder of predicted masks: a segmentation dataset or a folder of true masks.",
)
@output_option(
    help_text="Folder for metrics.json, per_class.csv, confusion.csv and confusion.png "
    "(default: print the JSON summary to stdout and write nothing). With several PREDS: "
    "one subfolder each, named after the file, and comparison.csv."
)
@click.option(
    "--fail-under",
    "fail_under",
    multiple=True,
    metavar="METRIC=VALUE",
    help="Exit 3 when METRIC (a name from metrics.json: accuracy, macro_f1, weighted_f1, "
    "balanced_accuracy, roc_auc, pr_auc, ...) is below VALUE, for any of the PREDS. "
    "Repeatable.",
)
@click.option(
    "--mask-classes",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    metavar="FILE",
    help="For a folder of masks whose --truth is a plain folder of multi-class masks "
    "(index or palette PNGs): the file prep --mask-classes takes, one class name per line "
    "for the values 0, 1, ... (background first); a line '255 ignore' leaves those pixels "
    "out of every score.",
)
@click.option(
    "--mask-colors",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    metavar="FILE",
    help="As --mask-classes for colour masks: the file prep --mask-colors takes, lines "
    "'NAME R G B' (background first; 'ignore R G B' for unlabelled pixels). True RGB and "
    "palette masks are read by colour, and so are RGB predictions.",
)
def command(preds, truth, output, fail_under, mask_classes, mask_colors):
    """Score the predictions CSV PREDS (- for stdin) against the truth.

    Rows are matched by path: the file each path names, or the path as written
    relative to the dataset folder. Reports accuracy, precision/recall/F1 per class,
    macro and weighted F1, log loss (from the p_<class> columns) and the confusion
    matrix; for two classes also balanced accuracy, ROC AUC and PR AUC for the second
    class. A table goes to stderr; the JSON summary to stdout, or with -o the files
    go into a folder and its metrics.json path to stdout.

    Several PREDS (predict's and tta's, say) are scored against the same truth and
    compared in one table on stderr, one row per file (accuracy, log loss, F1, and
    the binary metrics); stdout gets a JSON list of their summaries, or with -o the
    path of comparison.csv, beside one subfolder per file. Every --fail-under bar
    applies to every file: a gate never passes a file it was given.

    PREDS may instead be one folder of mask PNGs (imgkit segment -o): each is matched
    to its true mask by file name and scored (IoU, Dice, pixel accuracy); per_image.csv
    and metrics.json (the means) are written, the worst images listed on stderr, and
    --fail-under takes iou, dice, pixel_accuracy or median_iou. Against a dataset of
    multi-class masks (prep --mask-classes) each class's IoU is listed, with the mean
    IoU over the classes; --fail-under then takes mean_iou, pixel_accuracy or
    median_iou. A plain folder of multi-class true masks (PASCAL VOC's
    SegmentationClass, say) is scored so given its classes: --mask-classes FILE or
    --mask-colors FILE, the files prep takes. Without one, a mask that is not binary
    (values other than 0/1 or 0/255, more than two colours) is refused, never
    thresholded, unless its other values are compression noise or an anti-aliased
    edge's grey levels, which prep repairs too.

    With a multi-label dataset as --truth, PREDS is one CSV path,labels,p_<label>...
    (predict or tta on a multi-label bundle): the labels column gives micro and macro
    F1 and F2, the mean per-image F2 (Planet's score) and exact-match accuracy; the p_
    columns give each label's average precision and ROC AUC, and mAP. A per-label
    table goes to stderr; -o writes metrics.json and per_label.csv. --fail-under
    takes micro_f1, macro_f1, micro_f2, macro_f2, mean_f2, mAP or exact_match.

    \b
    Example:
        imgkit eval preds.csv --truth data/fashion -o eval/ --fail-under accuracy=0.9
        imgkit predict runs/cats data/cats | imgkit eval - --truth data/cats
        imgkit eval preds.csv tta.csv --truth data/dvc -o eval/
        imgkit eval masks_out/ --truth data/seg --fail-under iou=0.7
        imgkit eval masks/ --truth data/scenes --fail-under mean_iou=0.6   # per class
        imgkit eval masks/ --truth VOC2012/SegmentationClass --mask-classes voc.txt
        imgkit eval planet.csv --truth data/planet --fail-under mean_f2=0.85
    """
    from imgkit.errors import GateFailedError
    from imgkit.evaluate.matching import load_truth
    from imgkit.evaluate.metrics import GATE_METRICS, check_gates

    bars = parse_key_values(fail_under, "--fail-under")
    table = _mask_table(mask_classes, mask_colors)
    if _scored_elsewhere(preds, truth, output, bars, table):
        return
    if table is not None:
        raise click.UsageError(
            "--mask-classes and --mask-colors are for a folder of predicted masks (imgkit "
            "segment -o), not a predictions CSV"
        )
    _check_bars(bars, GATE_METRICS)
    if list(preds).count("-") > 1:
        raise click.BadParameter("- (stdin) can be given only once", param_hint="PREDS")

    truth_set = load_truth(truth)
    several = len(preds) > 1
    scored = [_score(p, truth, truth_set, prefix=f"{p}: " if several else "") for p in preds]

    if not several:
        summary, matched = scored[0]
        text = json.dumps(summary, indent=2, ensure_ascii=False) + "\n"
        _show(matched.report)
        if output in (None, "-"):
            click.echo(text, nl=False)
        else:
            click.echo(_write(output, text, matched, (preds[0], truth)))
    else:
        _compare(preds, scored, output)

    failures = []
    for name, (summary, _) in zip(preds, scored, strict=True):
        try:
            failed = check_gates(summary, bars)
        except KeyError as e:
            raise click.UsageError(
                f"--fail-under {e.args[0]}: not computed for these predictions (it needs two "
                "classes and p_<class> columns)"
            ) from None
        failures += [f"{name}: {f}" if several else f for f in failed]
    if failures:
        raise GateFailedError("quality gate failed: " + "; ".join(failures))


def _mask_table(classes_file, colors_file):
    """The class table of multi-class true masks (None: no class file given)."""
    if classes_file is None and colors_file is None:
        return None
    from imgkit.data.classfiles import mask_classes_from

    return mask_classes_from(classes_file, colors_file)


def _scored_elsewhere(preds, truth, output, bars, table=None) -> bool:
    """Multi-label predictions and folders of masks have scores of their own: score them
    and say so; False for classification predictions."""
    from imgkit.evaluate.multilabel_eval import is_multilabel_truth

    if is_multilabel_truth(truth):
        # Multi-label predictions (path,labels,p_<label>...): their own scores.
        from imgkit.commands._multilabel_eval import eval_multilabel

        if len(preds) > 1:
            raise click.UsageError("multi-label predictions are scored one file at a time")
        if table is not None:
            raise click.UsageError("--mask-classes and --mask-colors are for masks")
        eval_multilabel(preds[0], truth, output, bars)
        return True
    if len(preds) == 1 and preds[0] != "-":
        from imgkit.evaluate.maskeval import is_mask_folder

        if is_mask_folder(preds[0]):
            # A folder of mask PNGs (imgkit segment): segmentation scores instead.
            from imgkit.commands._mask_eval import eval_masks

            eval_masks(preds[0], truth, output, bars, table)
            return True
    return False


def _check_bars(bars: dict, metrics) -> None:
    for name in bars:
        if name not in metrics:
            why = (
                " (lower is better; it cannot be a --fail-under bar)" if name == "log_loss" else ""
            )
            raise click.BadParameter(
                f"unknown metric {name!r}{why}; choose from {', '.join(metrics)}",
                param_hint="--fail-under",
            )


def _score(preds: str, truth: str, truth_set, prefix: str = "") -> tuple[dict, object]:
    """Score one predictions file; warn about rows that could not be scored.

    Returns:
        The summary and the :class:`~imgkit.evaluate.matching.Matched` rows.
    """
    from imgkit.evaluate.matching import evaluate_predictions, read_predictions

    source = click.get_binary_stream("stdin") if preds == "-" else preds
    matched = evaluate_predictions(read_predictions(source), truth_set)
    if matched.unmatched:
        first = ", ".join(matched.unmatched[:SHOW_UNMATCHED])
        more = " ..." if len(matched.unmatched) > SHOW_UNMATCHED else ""
        warn(
            f"{prefix}{len(matched.unmatched)} predicted path(s) are not in the truth {truth} "
            f"and were not scored: {first}{more}"
        )
    if matched.duplicates:
        warn(
            f"{prefix}{len(matched.duplicates)} path(s) predicted more than once; "
            "the first row counts"
        )
    summary = {
        "predictions": str(preds),
        "truth": str(truth),
        **matched.report.summary,
        "unmatched": len(matched.unmatched),
    }
    return summary, matched


def _folder_names(preds) -> list[str]:
    # One subfolder per file, named after it; "-" is "stdin", and a repeated name
    # (runs/a/preds.csv, runs/b/preds.csv) gets -2, -3 so no result overwrites another.
    from pathlib import Path

    names, seen = [], set()
    for p in preds:
        base = "stdin" if p == "-" else (Path(p).stem or "preds")
        name, k = base, 1
        while name in seen:
            k += 1
            name = f"{base}-{k}"
        seen.add(name)
        names.append(name)
    return names


def _compare(preds, scored, output) -> None:
    from pathlib import Path

    from imgkit.evaluate.metrics import comparison_frame
    from imgkit.fileio import write_csv

    summaries = [s for s, _ in scored]
    table = comparison_frame(summaries, [str(p) for p in preds])
    _show_comparison(table)
    if output in (None, "-"):
        click.echo(json.dumps(summaries, indent=2, ensure_ascii=False))
        return
    out = Path(output)
    for p, name, (summary, matched) in zip(preds, _folder_names(preds), scored, strict=True):
        text = json.dumps(summary, indent=2, ensure_ascii=False) + "\n"
        _write(out / name, text, matched, (p, summary["truth"]))
    # comparison.csv last: its presence says every subfolder is complete.
    click.echo(str(write_csv(table, out / "comparison.csv")))


def _show_comparison(table) -> None:
    from rich.table import Table

    # weighted_f1 stays in comparison.csv; the table keeps to what fits a terminal.
    table = table.drop(columns=["weighted_f1"], errors="ignore")
    view = Table(*table.columns, title="comparison")
    for row in table.itertuples(index=False):
        cells = [str(row[0])]
        for value in row[1:]:
            if value is None or value != value:  # absent, or NaN from pandas
                cells.append("")
            elif isinstance(value, float):
                cells.append(f"{value:.4f}")
            else:
                cells.append(str(value))
        view.add_row(*cells)
    console = stderr_console()
    if not console.is_terminal:
        # A log or a pipe has no width to respect: never cut a file name or a number.
        console.width = max(console.width, 240)
    console.print(view)


def _write(folder, text: str, matched, names: tuple[str, str]) -> str:
    """Write one evaluation's files into ``folder``: tables, the confusion figure and
    index.html, the gallery ``report`` shares (each confusion cell links to its
    images, the worst images first); ``names`` are the predictions' and the truth's."""
    from pathlib import Path

    from imgkit.evaluate.gallery import Gallery, classification_sections, write_page
    from imgkit.evaluate.plots import plot_confusion  # matplotlib only when a figure is drawn
    from imgkit.fileio import write_csv, write_text

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    report = matched.report
    write_csv(report.per_class, out / "per_class.csv")
    write_csv(report.confusion_frame(), out / "confusion.csv")
    plot_confusion(report.confusion, report.classes, out / "confusion.png", normalize=True)
    sections = classification_sections(matched.scored, Gallery(out, "gallery"))
    summary = report.summary
    write_page(out, "eval.html", g=sections, summary=summary, predictions=names[0], truth=names[1])
    # metrics.json last: its presence says the folder is complete.
    return str(write_text(out / "metrics.json", text))


def _show(report) -> None:
    from rich.table import Table

    s = report.summary
    overall = Table("metric", "value", title=f"{s['n']} images")
    for name in ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "log_loss"):
        if name in s:
            overall.add_row(name, f"{s[name]:.4f}")
    for name in ("roc_auc", "pr_auc"):
        if name in s:
            overall.add_row(f"{name} ({s['positive_class']})", f"{s[name]:.4f}")
    per_class = Table("class", "precision", "recall", "f1", "support")
    for row in report.per_class.itertuples(index=False):
        per_class.add_row(
            str(row[0]),
            f"{row.precision:.4f}",
            f"{row.recall:.4f}",
            f"{row.f1:.4f}",
            str(row.support),
        )
    console = stderr_console()
    console.print(overall)
    console.print(per_class)
