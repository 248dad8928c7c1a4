"""``imgkit audit``: duplicates, leaks, outliers, label issues and imbalance in a dataset."""

from __future__ import annotations

import click

from imgkit.commands._common import info, lock_output, parse_key_values, stderr_console

KINDS = ("duplicate", "near_duplicate", "leak", "outlier", "label", "imbalance")


def _kinds(ctx, param, value):
    if not value:
        return ()
    kinds = tuple(k.strip() for k in value.split(",") if k.strip())
    wrong = [k for k in kinds if k not in KINDS]
    if wrong:
        raise click.BadParameter(f"{wrong[0]!r} is not an issue kind ({', '.join(KINDS)})")
    return kinds


def _table(summary: dict) -> None:
    from rich.table import Table

    by_split = summary["by_split"]
    splits = sorted({s for v in by_split.values() for s in v})
    table = Table(title=f"audit of {summary['images']} images", title_justify="left")
    for col in ("issue", "total", *splits):
        table.add_column(col, justify="left" if col == "issue" else "right")
    for kind in KINDS:
        n = summary["issues"].get(kind, 0)
        table.add_row(kind, str(n), *[str(by_split.get(kind, {}).get(s, "")) for s in splits])
    stderr_console().print(table)


@click.command(name="audit")
@click.argument("data", type=click.Path(file_okay=False))
@click.option("-o", "--output", required=True, help="Folder for issues.csv, summary.json, sheets.")
@click.option(
    "--against",
    type=click.Path(),
    help="A second dataset or folder of images "
    "(e.g. a test set): copies of DATA's images there are leaks.",
)
@click.option(
    "--predictions",
    type=click.Path(dir_okay=False),
    help="predict's CSV for DATA's "
    "images (out-of-fold, e.g. `imgkit cv`'s oof.csv): finds suspected labels.",
)
@click.option(
    "--features",
    default="mobilenetv2",
    show_default=True,
    metavar="NAME|RUN",
    help="Embeddings: mobilenetv2 (ImageNet, 128 px), a model bundle folder (its "
    "own features), or none (hashes and statistics only).",
)
@click.option(
    "--weights",
    default="imagenet",
    show_default=True,
    help="MobileNetV2 weights: imagenet (Keras's cache) or a weights file.",
)
@click.option(
    "--threshold",
    "thresholds",
    multiple=True,
    metavar="NAME=VALUE",
    help="Override a threshold (repeatable); summary.json lists them all.",
)
@click.option(
    "--fail-on",
    callback=_kinds,
    metavar="KINDS",
    help="Exit 3 when any finding of these kinds (comma list) exists, e.g. leak.",
)
@click.option(
    "--dedupe",
    type=click.Choice(["group", "drop"]),
    is_flag=False,
    flag_value="group",
    default=None,
    help="Write the copy clusters into DATA's manifest as groups and "
    "move each into one split; 'drop' also removes exact copies' rows. Images are "
    "never changed. Put it after DATA, or write --dedupe=drop.",
)
@click.option("--trust-code", is_flag=True, help="Let a --features bundle's code run.")
def command(
    data, output, against, predictions, features, weights, thresholds, fail_on, dedupe, trust_code
):
    """Find duplicates, leaks across splits, outliers and wrong labels in a dataset.

    Writes OUTPUT/issues.csv (path,issue,score,other,split,other_split; sorted by
    issue, then score, higher is worse), summary.json (counts, thresholds used),
    rejects.csv, and a PNG contact sheet per issue kind. The path of issues.csv goes
    to stdout, a table to stderr. Embeddings are cached in DATA/.cache.

    \b
    Example:
        imgkit audit data/cats -o audit/ --against kaggle/test --fail-on leak
        imgkit audit data/cats -o audit/ --predictions cv/oof.csv
        imgkit audit data/cats -o audit/ --dedupe
    """
    from imgkit.errors import GateFailedError
    from imgkit.evaluate.audit import Thresholds, run_audit

    limits = Thresholds().replace(parse_key_values(thresholds, "--threshold"))
    lock_output(output)
    result = run_audit(
        data,
        output,
        against=against,
        predictions=predictions,
        features=features,
        weights=weights,
        thresholds=limits,
        trust=trust_code or None,
        say=info,
    )
    _table(result.summary)
    if dedupe:
        from imgkit.data.dedupe import dedupe_dataset

        done = dedupe_dataset(data, result.clusters, result.exact if dedupe == "drop" else None)
        info(
            f"dedupe: {done['clusters']} clusters grouped, {done['moved']} images moved, "
            f"{len(done['dropped'])} exact copies dropped (recorded in {data}/dataset.json)"
        )
    click.echo(f"{output}/issues.csv")
    found = {k: result.summary["issues"].get(k, 0) for k in fail_on}
    failing = {k: n for k, n in found.items() if n}
    if failing:
        listed = ", ".join(f"{n} {k}" for k, n in failing.items())
        raise GateFailedError(f"audit found {listed} (--fail-on {','.join(fail_on)})")
