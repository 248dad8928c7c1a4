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
    help="With --fit: the labels of the OOF images: a dataset folder or a path,label CSV.",
)
def command(predictions, output, weights, method, fit, truth):
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

    \b
    Example:
        imgkit blend cnn.csv mobilenet.csv -o blend.csv
        imgkit blend a.csv b.csv --weights 2,1 --method geometric -o blend.csv
        imgkit blend cv-a/test.csv cv-b/test.csv -o blend.csv \\
            --fit cv-a/oof.csv,cv-b/oof.csv --truth data/dvc5
        imgkit blend a.csv b.csv | imgkit submit - -o submission.csv
    """
    import numpy as np

    from imgkit.evaluate.blend import align, blend, parse_weights, read_table
    from imgkit.fileio import atomic_open
    from imgkit.infer.predict import frame_to_csv

    if (fit is None) != (truth is None):
        raise click.UsageError("--fit and --truth go together")
    if fit is not None and weights is not None:
        raise click.UsageError("--fit chooses the weights: drop --weights")
    _refuse_multilabel([*predictions, *(fit.split(",") if fit else [])])
    tables = align([read_table(p) for p in predictions])
    w, temperature = parse_weights(weights, len(tables)), 1.0
    if fit is not None:
        w, temperature = _fitted(fit.split(","), truth, method, len(tables))
    shown = ", ".join(f"{v:.3f}" for v in w)
    n = len(tables[0].paths)
    tempered = f", temperature {temperature:g}" if temperature != 1 else ""
    info(f"blended {len(tables)} files of {n} images ({method}, weights {shown}{tempered})")
    text = frame_to_csv(blend(tables, np.asarray(w), method, temperature), header=True)
    if output in (None, "-"):
        click.echo(text, nl=False)
        return
    with atomic_open(output, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    click.echo(output)


def _refuse_multilabel(files: list[str]) -> None:
    """One line for multi-label predictions (path,labels,p_<label>...): their labels
    come from each bundle's per-label thresholds, which a blend of CSVs does not have."""
    from pathlib import Path

    from imgkit.errors import BadInputError

    for name in files:
        if not Path(name).is_file():
            continue  # read_table says what is wrong
        with open(name, encoding="utf-8-sig", errors="replace") as f:
            header = [c.strip().strip('"') for c in f.readline().split(",")]
        if "labels" in header:
            raise BadInputError(
                f"{name}: multi-label predictions (a labels column); imgkit blend takes "
                "classification CSVs only"
            )


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
