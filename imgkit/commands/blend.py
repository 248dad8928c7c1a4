"""``imgkit blend``: average predictions CSVs of the same images; CSV out."""

from __future__ import annotations

import click

from imgkit.commands._common import info, output_option


@click.command(name="blend")
@click.argument("predictions", nargs=-1, required=True)
@output_option(help_text="CSV file to write (default: stdout).")
@click.option(
    "--weights",
    default=None,
    metavar="W1,W2,...",
    help="One weight per PREDICTIONS file, in order (normalised to sum 1)  [default: equal].",
)
@click.option(
    "--method",
    type=click.Choice(["mean", "geometric", "rank"]),
    default="mean",
    show_default=True,
    help="mean: weighted mean of the probabilities; geometric: weighted geometric mean, "
    "renormalised; rank: each model's probabilities of a class replaced by their rank "
    "among the images (for ROC AUC; not calibrated probabilities).",
)
@click.option(
    "--fit",
    default=None,
    metavar="OOF_1,OOF_2,...",
    help="Out-of-fold predictions of the same models, in the same order (imgkit cv's "
    "oof.csv): the weights, then one temperature for the blend (mean, geometric), are "
    "chosen to minimise their blend's log loss against --truth.",
)
@click.option(
    "--truth",
    default=None,
    metavar="DATA",
    help="With --fit: the labels of the OOF images: a dataset folder or a path,label CSV "
    "(multi-label: the dataset folder).",
)
@click.option(
    "--threshold",
    type=click.Choice(["auto", "f1", "f2"]),
    default="auto",
    show_default=True,
    help="Multi-label predictions only: each label's threshold is fitted on the OOF blend "
    "to maximise its F1 (auto, f1) or F2 (f2).",
)
def command(predictions, output, weights, method, fit, truth, threshold):
    """Blend predictions CSVs of the same images into one; CSV out.

    PREDICTIONS are imgkit predictions CSVs (path,label,confidence,p_<class>...) of the
    same images and classes, as predict, tta or a cross-validation ensemble write
    them; a file with another image or class is refused in one line naming it. Rows
    come out in the first file's order; the label is the most probable class.

    --fit chooses the weights on out-of-fold predictions (one OOF file per PREDICTIONS
    file, in the same order): those that give the lowest log loss against --truth.
    Then, for mean and geometric, one temperature fitted on the OOF blend is applied to
    the output: a mean of calibrated probabilities is under-confident where the models
    disagree. The weights, the temperature and the OOF log losses are shown on stderr;
    --weights with the shown weights gives the blend without the temperature. The
    output is a predictions CSV like any other: eval scores it, submit submits it.

    Multi-label predictions (path,labels,p_<label>...) are blended label by label
    (mean or geometric, each label a binary case) and need --fit and --truth DATA:
    the weights and one temperature shared by the labels are fitted on the OOF blend's
    binary log loss, and each label's threshold on the tempered OOF blend (--threshold);
    the labels column is decided again with them.

    \b
    Example:
        imgkit blend cnn.csv mobilenet.csv -o blend.csv
        imgkit blend a.csv b.csv --weights 2,1 --method geometric -o blend.csv
        imgkit blend cv-a/test.csv cv-b/test.csv -o blend.csv \\
            --fit cv-a/oof.csv,cv-b/oof.csv --truth data/dvc5
        imgkit blend a.csv b.csv | imgkit submit - -o submission.csv
        imgkit blend cv-a/test.csv cv-b/test.csv -o blend.csv --threshold f2 \\
            --fit cv-a/oof.csv,cv-b/oof.csv --truth data/planet5
    """
    import numpy as np

    from imgkit.evaluate.blend import align, blend, parse_weights, read_table
    from imgkit.infer.predict import frame_to_csv

    if (fit is None) != (truth is None):
        raise click.UsageError("--fit and --truth go together")
    if fit is not None and weights is not None:
        raise click.UsageError("--fit chooses the weights: drop --weights")
    multilabel = _multilabel([*predictions, *(fit.split(",") if fit else [])])
    tables = align([read_table(p) for p in predictions])
    if multilabel:
        _write(_blend_multilabel(tables, method, fit, truth, threshold), output)
        return
    w, temperature = parse_weights(weights, len(tables)), 1.0
    if fit is not None:
        w, temperature = _fitted(fit.split(","), truth, method, len(tables))
    shown = ", ".join(f"{v:.3f}" for v in w)
    n = len(tables[0].paths)
    tempered = f", temperature {temperature:g}" if temperature != 1 else ""
    info(f"blended {len(tables)} files of {n} images ({method}, weights {shown}{tempered})")
    _write(frame_to_csv(blend(tables, np.asarray(w), method, temperature), header=True), output)


def _write(text: str, output: str | None) -> None:
    from imgkit.fileio import atomic_open

    if output in (None, "-"):
        click.echo(text, nl=False)
        return
    with atomic_open(output, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    click.echo(output)


def _multilabel(files: list[str]) -> bool:
    """Whether the files are multi-label predictions; one line if they are mixed."""
    from imgkit.errors import BadInputError
    from imgkit.evaluate.blend_multilabel import is_multilabel_csv

    kinds = [is_multilabel_csv(f) for f in files]
    if any(kinds) and not all(kinds):
        odd = files[kinds.index(not kinds[0])]
        raise BadInputError(
            f"{odd}: {'multi-label' if not kinds[0] else 'single-label'} predictions among "
            f"{'single-label' if not kinds[0] else 'multi-label'} ones ({files[0]})"
        )
    return bool(kinds) and kinds[0]


def _blend_multilabel(tables, method, fit, truth, threshold) -> str:
    """The multi-label blend's CSV text: labels re-decided with OOF-fitted thresholds."""
    from imgkit.errors import BadInputError
    from imgkit.evaluate.blend import align, read_table
    from imgkit.evaluate.blend_multilabel import blend_frame, fit_multilabel_blend, truth_matrix
    from imgkit.infer.predict import frame_to_csv

    if fit is None:
        raise BadInputError(
            "multi-label predictions: give --fit OOF_1,OOF_2,... and --truth DATA (each "
            "label's threshold is fitted on the OOF blend; the files' own do not carry over)"
        )
    oof_files = fit.split(",")
    if len(oof_files) != len(tables):
        raise BadInputError(
            f"--fit names {len(oof_files)} OOF files for {len(tables)} PREDICTIONS files"
        )
    oof = align([read_table(p) for p in oof_files])
    if sorted(oof[0].classes) != sorted(tables[0].classes):
        raise BadInputError(
            f"{oof[0].name}: labels {oof[0].classes} differ from {tables[0].name}'s"
        )
    y = truth_matrix(oof[0], truth)
    got = fit_multilabel_blend(oof, y, method, "f2" if threshold == "f2" else "f1")
    # The OOF columns in the predictions' order, so the thresholds line up with them.
    order = [oof[0].classes.index(c) for c in tables[0].classes]
    thresholds = got["thresholds"][order]
    shown = ", ".join(f"{v:.3f}" for v in got["weights"])
    info(f"blended {len(tables)} files of {len(tables[0].paths)} images ({method}, weights "
         f"{shown}, temperature {got['temperature']:g})")  # fmt: skip
    cut = ", ".join(f"{c} {t:g}" for c, t in zip(tables[0].classes, thresholds, strict=True))
    info(f"thresholds ({threshold}, fitted on the OOF blend): {cut}")
    s = got["oof"]
    info(f"OOF blend: micro F1 {s['micro_f1']}, mean F2 {s['mean_f2']}, mAP {s['mAP']}")
    frame = blend_frame(tables, got["weights"], method, got["temperature"], thresholds)
    return frame_to_csv(frame, header=True)


def _fitted(oof_files: list[str], truth: str, method: str, n: int):
    """Weights and temperature minimising the OOF blend's log loss; the losses on stderr."""
    from imgkit.evaluate.blend import align, combine, fit_blend, read_table, truth_labels
    from imgkit.train.calibration import log_loss, temper

    if len(oof_files) != n:
        raise click.UsageError(f"--fit names {len(oof_files)} OOF files for {n} PREDICTIONS files")
    oof = align([read_table(p) for p in oof_files])
    labels = truth_labels(oof[0], truth)
    probas = [t.proba for t in oof]
    w, temperature = fit_blend(probas, labels, method)
    for t in oof:
        info(f"OOF log loss {log_loss(t.proba, labels):.4f}  {t.name}")
    blended = combine(probas, w, method)
    info(f"OOF log loss {log_loss(blended, labels):.4f}  blended")
    if temperature != 1:
        tempered = log_loss(temper(blended, temperature), labels)
        info(f"OOF log loss {tempered:.4f}  blended, temperature {temperature:g}")
    return w, temperature
