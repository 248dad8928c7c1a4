"""``imgkit submit``: turn a predictions CSV into a Kaggle submission file."""

from __future__ import annotations

import click

from imgkit.commands._common import info, output_option


@click.command(name="submit")
@click.argument("preds")
@output_option(help_text="Submission file to write (default: stdout).")
@click.option(
    "--sample",
    default=None,
    help="The competition's sample submission: its header, id column and row order are "
    "copied, its second column filled.",
)
@click.option(
    "--clip",
    type=click.FloatRange(0, 0.5, max_open=True),
    default=None,
    metavar="EPS",
    help="Clip probabilities to [EPS, 1-EPS] (log-loss competitions; e.g. 0.005).",
)
@click.option(
    "--column",
    default=None,
    help="The probability column to submit (p_dog, or dog). Default: the second of two "
    "p_ columns, the positive class.",
)
@click.option(
    "--id-from",
    "id_from",
    type=click.Choice(["stem", "name", "path"]),
    default="stem",
    show_default=True,
    help="How a predicted path gives its id: stem (test/12500.jpg -> 12500), name "
    "(12500.jpg) or path (as written).",
)
def command(preds, output, sample, clip, column, id_from):
    """Make a competition submission from the predictions CSV PREDS (- for stdin).

    Each predicted path gives an id (by default its file name stem: data/test/12500.jpg
    is 12500). With --sample the output has the sample's header, ids and row order
    and its second column holds the probability for each id; ids are compared as
    text, and whole numbers as numbers (12500 and 12500.0 match). Without --sample
    it is Dogs vs Cats' id,label, label being P(dog), sorted by id.

    Multi-label predictions (path,labels,p_<label>...) submit each id's labels,
    space-separated, in the sample's second column (Planet's image_name,tags), or
    as image_name,tags without --sample; an id given no label gets an empty cell.

    The probability is the p_ column of the positive class (with two classes, the
    second in the bundle's order: p_dog for cat/dog), or --column. The command fails,
    writing nothing, on an id missing from or not in the sample, a duplicate id, a
    NaN or a value outside [0, 1]. A one-line summary goes to stderr; the file is
    written atomically and its path printed.

    \b
    Example:
        imgkit submit tta.csv --sample sample_submission.csv -o submission.csv
        imgkit submit preds.csv --clip 0.005 -o submission.csv
        imgkit submit planet.csv --sample sample_submission_v2.csv -o submission.csv
    """
    from imgkit.evaluate.matching import read_csv_strings, read_predictions
    from imgkit.evaluate.submit import make_submission
    from imgkit.fileio import write_text

    source = click.get_binary_stream("stdin") if preds == "-" else preds
    table = read_predictions(source)
    sample_table = read_csv_strings(sample) if sample else None
    sub = make_submission(
        table,
        sample_table,
        column=column,
        id_from=id_from,
        clip=clip,
        preds_name="stdin" if preds == "-" else str(preds),
        sample_name=str(sample),
    )
    text = sub.to_csv()
    info(f"submission: {sub.describe()}")
    if output in (None, "-"):
        click.echo(text, nl=False)
    else:
        click.echo(str(write_text(output, text)))
