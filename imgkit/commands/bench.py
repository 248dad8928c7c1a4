"""``imgkit bench``: images/s of every runtime a bundle has, measured on this machine."""

from __future__ import annotations

import click

from imgkit.commands._common import batch_size_option, info, stderr_console, trust_code_option


@click.command(name="bench")
@click.argument("run")
@click.argument("images", nargs=-1)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=300,
    show_default=True,
    help="Time on at most this many images (batch 1 on at most 64 of them).",
)
@batch_size_option(64, help_text="The batch timed besides batch 1 (predict's default).")
@trust_code_option
def command(run, images, limit, batch_size, trust_code):
    """Time decoding, Keras and every export of the bundle RUN on IMAGES.

    IMAGES are image files or folders (default: the val split of the bundle's
    dataset, when it is at hand). They are decoded and resized once, timed on their
    own (the `decode` row: the ceiling no runtime can pass), then Keras and each
    export recorded in RUN/imgkit.json (ONNX fp32 and int8, OpenVINO fp32, bf16 and
    int8, TFLite, SavedModel) whose file is the recorded one and whose runtime is
    installed is loaded, warmed up and timed on the same arrays at batch 1 and at
    --batch-size: images/s once loaded, the marginal cost of a long `imgkit predict`.
    The float32 OpenVINO IR is timed at fp32 and, where the CPU runs it, bf16.

    A table goes to stderr and CSV to stdout, with the columns runtime, precision,
    batch, images_per_s, max_diff (the largest difference from Keras's
    probabilities on these images) and accuracy_change (the change in val accuracy,
    or IoU, in points, that a reduced-precision export recorded).

    \b
    Example:
        imgkit bench runs/fashion
        imgkit bench runs/fashion photos/ --limit 100 > bench.csv
    """
    import csv
    import sys

    from imgkit.bundle import load_bundle
    from imgkit.export.bench import COLUMNS, bench

    bundle = load_bundle(run, trust=trust_code or None)
    rows = bench(bundle, list(images) or None, limit=limit, batch_size=batch_size, on_info=info)
    _show(rows)
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([_cell(getattr(row, column)) for column in COLUMNS])


def _cell(value) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _show(rows) -> None:
    from rich import box
    from rich.table import Table

    table = Table(
        "runtime", "precision", "batch", "images/s", "vs keras", "max diff", "acc. change (points)",
        box=box.SIMPLE_HEAD,
    )  # fmt: skip
    keras = {r.batch: r.images_per_s for r in rows if r.runtime == "keras"}
    for r in rows:
        ratio = f"{r.images_per_s / keras[r.batch]:.2f}x" if keras.get(r.batch) else ""
        diff = "" if r.max_diff is None else f"{r.max_diff:.2g}"
        change = "" if r.accuracy_change is None else f"{r.accuracy_change:+.2f}"
        table.add_row(
            r.runtime, r.precision, str(r.batch), f"{r.images_per_s:.1f}", ratio, diff, change
        )
    stderr_console().print(table)
