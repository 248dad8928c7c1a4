"""``imgkit export``: the bundle's model as ONNX, SavedModel or TFLite, checked against Keras."""

from __future__ import annotations

import click

from imgkit.commands._common import info, lock_output, stderr_console, trust_code_option
from imgkit.export.formats import QUANTIZE


@click.command(name="export")
@click.argument("run")
@click.option(
    "-f",
    "--format",
    "formats",
    multiple=True,
    default=("onnx",),
    show_default=True,
    metavar="FORMAT[,FORMAT]",
    help="onnx (model.onnx), savedmodel (saved_model/, TF Serving), tflite (model.tflite). "
    "Repeat the option or give a comma list for several.",
)
@click.option(
    "--check",
    multiple=True,
    metavar="IMAGES",
    help="Image files or folders to measure parity on (repeatable)  "
    "[default: the val split of the bundle's dataset, when it is at hand].",
)
@click.option(
    "--check-limit",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="Check on at most this many images.",
)
@click.option(
    "--tolerance",
    type=click.FloatRange(min=0),
    default=1e-4,
    show_default=True,
    help="Largest absolute difference from Keras's probabilities (mask probabilities "
    "for segmentation) an export may show. Not applied to --quantize exports.",
)
@click.option(
    "--quantize",
    type=click.Choice(QUANTIZE),
    default="none",
    show_default=True,
    help="TFLite only: float16 weights, or int8 weights and activations calibrated on "
    "the check images. A quantized export is not held to --tolerance: its difference "
    "and its change in accuracy (on val, or agreement with Keras's labels on --check "
    "images) are reported and recorded instead.",
)
@click.option("--opset", type=click.IntRange(min=7), default=None, help="ONNX opset.")
@trust_code_option
def command(run, formats, check, check_limit, tolerance, quantize, opset, trust_code):
    """Export the model of the bundle RUN; files go into RUN beside model.keras.

    Each format is written under a temporary name, loaded back in its own runtime
    (ONNX Runtime, TensorFlow, the LiteRT interpreter) and run on real images: the
    val split of the bundle's dataset when its folder is still at hand, else the
    images given with --check. The largest difference from Keras's probabilities
    and whether every label agrees are recorded under "exports" in RUN/imgkit.json.
    An export over --tolerance fails (exit 3) and leaves nothing behind: no file,
    imgkit.json unchanged. With several formats, all are written or none.

    Prints the written paths on stdout and a table on stderr. `imgkit predict`,
    `tta` and `segment` run a bundle's model.onnx through ONNX Runtime (--runtime).
    Needs the export extra: pip install -e ".[export]".

    \b
    Example:
        imgkit export runs/fashion --format onnx
        imgkit export runs/fashion -f onnx,savedmodel,tflite
        imgkit export runs/dvc -f tflite --quantize int8
        imgkit export runs/imported -f onnx --check photos/
    """
    from imgkit.bundle import load_bundle
    from imgkit.export.exporter import export_bundle, parse_formats

    wanted = parse_formats(formats)
    bundle = load_bundle(run, trust=trust_code or None)
    members = getattr(bundle, "members", None)
    if members:
        from imgkit.errors import BadBundleError

        raise BadBundleError(
            f"{run}: a cross-validation ensemble of {len(members)} fold bundles; export each "
            f"fold ({members[0].path} ...), and predict runs each on its exported runtime"
        )
    lock_output(run)  # one writer of the bundle: no export beside a train --overwrite
    records = export_bundle(
        bundle,
        wanted,
        check=list(check) or None,
        tolerance=tolerance,
        quantize=quantize,
        limit=check_limit,
        opset=opset,
        on_info=info,
    )
    _show(records)
    for record in records.values():
        click.echo(bundle.path / record["file"])


def _show(records: dict) -> None:
    from rich import box
    from rich.table import Table

    from imgkit.export.info import human_bytes

    table = Table("format", "file", "size", "max diff", "labels agree", box=box.SIMPLE_HEAD)
    notes = []
    for fmt, r in records.items():
        p = r["parity"]
        table.add_row(
            fmt, r["file"], human_bytes(r["bytes"]), f"{p['max_abs_diff']:.2g}", _agree(p)
        )
        if "accuracy" in r:
            a = r["accuracy"]
            notes.append(
                f"{fmt} ({r.get('quantize')}): accuracy against {a['against']} "
                f"{a['keras']:.4f} -> {a['export']:.4f} ({a['change']:+.4f})"
            )
    stderr_console().print(table)
    for line in notes:
        info(line)


def _agree(parity: dict) -> str:
    if parity["labels_agree"]:
        return "yes"
    differing = parity.get("labels_differing", parity.get("pixels_differing"))
    return f"no ({differing} differ)"
