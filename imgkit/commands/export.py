"""``imgkit export``: the bundle's model as ONNX, OpenVINO, SavedModel or TFLite, checked."""

from __future__ import annotations

import click

from imgkit.commands._common import info, lock_output, stderr_console, trust_code_option
from imgkit.export.formats import QUANTIZE
from imgkit.export.reduced import PRECISIONS


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
    help="onnx (model.onnx), openvino (openvino/, or openvino-int8/), savedmodel "
    "(saved_model/, TF Serving), tflite (model.tflite). Repeat the option or give a comma "
    "list for several.",
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
    help="int8: with onnx, also model.int8.onnx (ONNX Runtime static quantization, QDQ, "
    "per-channel), with tflite an int8 model.tflite; float16: tflite only. Calibrated on "
    "--calibration-images train images (else check images), held to --max-drop, not "
    "--tolerance.",
)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="auto",
    show_default=True,
    help="openvino only: fp32, bf16 (the same IR run in bfloat16), or int8 (quantized by "
    "NNCF into openvino-int8/). auto: bf16 where the CPU runs it (AVX512-BF16 or AMX), "
    "else fp32. bf16 and int8 are held to --max-drop, not --tolerance.",
)
@click.option(
    "--max-drop",
    type=click.FloatRange(min=0),
    default=0.5,
    show_default=True,
    help="Reduced precision (int8, bf16, float16): the most accuracy (IoU for "
    "segmentation, micro F1 for multi-label) the export may lose against Keras's on the "
    "check images, in points; past it the export fails (exit 3) and nothing is written.",
)
@click.option(
    "--calibration-images",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="int8: calibrate activation ranges on at most this many images, spread over the "
    "dataset's train split (so the check on val is fair), else the first check images.",
)
@click.option("--opset", type=click.IntRange(min=7), default=None, help="ONNX opset.")
@trust_code_option
def command(run, formats, check, check_limit, tolerance, trust_code, **reduced):
    """Export the model of the bundle RUN; files go into RUN beside model.keras.

    Each format is written under a temporary name, loaded back in its own runtime
    (ONNX Runtime, OpenVINO, TensorFlow, the LiteRT interpreter) and run on real
    images: the val split of the bundle's dataset when its folder is still at hand,
    else the images given with --check. The largest difference from Keras's
    probabilities, whether every label agrees, and the images/s the check ran at are
    recorded under "exports" in RUN/imgkit.json. A full-precision export over
    --tolerance fails (exit 3); a reduced-precision one (int8, bf16, float16) records
    its change in accuracy and its label agreement instead, and fails (exit 3) past
    --max-drop. A failure leaves nothing behind: no file, imgkit.json unchanged. With
    several formats, all are written or none. A multi-label bundle is checked on each
    label's probability and decision (against its threshold), its accuracy the micro
    F1 of those decisions.

    Prints the written paths on stdout and a table on stderr. `imgkit predict`,
    `tta` and `segment` run an export with --runtime (auto: the fastest recorded
    one that kept at least 99% of Keras's labels);
    `imgkit bench` times them all. Needs the export extra: pip install -e ".[export]"
    (and for openvino the openvino extra: pip install -e ".[openvino]").

    \b
    Example:
        imgkit export runs/fashion --format onnx
        imgkit export runs/fashion -f onnx --quantize int8
        imgkit export runs/fashion -f openvino --precision int8
        imgkit export runs/fashion -f onnx,savedmodel,tflite
        imgkit export runs/dvc -f tflite --quantize int8
        imgkit export runs/imported -f onnx --check photos/
    """
    from imgkit.bundle import load_bundle
    from imgkit.export.exporter import ExportOptions, export_bundle, parse_formats

    wanted = parse_formats(formats)
    options = ExportOptions(
        tolerance=tolerance,
        max_drop=reduced["max_drop"],
        limit=check_limit,
        calibration=reduced["calibration_images"],
        opset=reduced["opset"],
    )
    bundle = load_bundle(
        run, task=("classification", "multilabel", "segmentation"), trust=trust_code or None
    )
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
        quantize=reduced["quantize"],
        precision=reduced["precision"],
        options=options,
        on_info=info,
    )
    _show(records)
    for record in records.values():
        click.echo(bundle.path / record["file"])


def _show(records: dict) -> None:
    from rich import box
    from rich.table import Table

    from imgkit.export.info import human_bytes
    from imgkit.infer.runtime import AUTO_MIN_AGREEMENT

    table = Table(
        "export", "file", "precision", "size", "max diff", "labels agree", "images/s",
        box=box.SIMPLE_HEAD,
    )  # fmt: skip
    notes = []
    for key, r in records.items():
        p = r["parity"]
        precision = r.get("precision") or r.get("quantize") or "fp32"
        table.add_row(
            key, r["file"], precision, human_bytes(r["bytes"]), f"{p['max_abs_diff']:.2g}",
            _agree(p), f"{r['images_per_s']:.0f}",
        )  # fmt: skip
        if "accuracy" in r:
            a = r["accuracy"]
            notes.append(
                f"{key} ({precision}): {a.get('metric', 'accuracy')} against {a['against']} "
                f"{a['keras']:.4f} -> {a['export']:.4f} ({100 * a['change']:+.2f} points)"
            )
        unit = "pixels" if "pixels_agreeing" in p else "labels"
        share = p.get(f"{unit}_agreeing", 1.0)
        if share < AUTO_MIN_AGREEMENT:
            notes.append(
                f"{key}: kept {100 * share:.1f}% of Keras's {unit}"
                f" (under {100 * AUTO_MIN_AGREEMENT:.0f}%): --runtime auto will not choose it; "
                f"--runtime {key} runs it by name"
            )
    stderr_console().print(table)
    for line in notes:
        info(line)


def _agree(parity: dict) -> str:
    if parity["labels_agree"]:
        return "yes"
    differing = parity.get("labels_differing", parity.get("pixels_differing"))
    return f"no ({differing} differ)"
