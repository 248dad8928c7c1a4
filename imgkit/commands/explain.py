"""``imgkit explain``: heatmaps of where a classifier found its class; PNGs and CSV out."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import click

from imgkit.commands._common import info, lock_output, output_option, unique_png_name, warn
from imgkit.commands._inference import inference_options, open_run, stdin_for
from imgkit.infer.explain import DEFAULT_METHOD, GRADIENT_METHODS, METHODS

COLUMNS = ["path", "label", "confidence", "explained", "p_explained", "peak_x", "peak_y"]


@click.command(name="explain")
@click.argument("run")
@click.argument("inputs", nargs=-1, required=True)
@output_option(required=True, help_text="Folder for the overlay PNGs (made if missing).")
@click.option(
    "--method",
    type=click.Choice(METHODS),
    default=DEFAULT_METHOD,
    show_default=True,
    help="occlusion: slide squares of the image, blurred, over it and map how much hiding "
    "each part lowers the class's logit (forward passes only: any bundle, any runtime); "
    "gradcam: Grad-CAM on the last spatial feature map; layercam: LayerCAM on it.",
)
@click.option(
    "--class",
    "target",
    multiple=True,
    metavar="NAME",
    help="Explain this class (a multi-label bundle's label) for every image, whatever its "
    "probability; repeat it for several, one overlay each  [default: each image's "
    "predicted class; a multi-label bundle's decided labels, or its most probable].",
)
@click.option(
    "--layer",
    default=None,
    metavar="NAME",
    help="The layer gradcam and layercam read (a layer name, or backbone/NAME inside a "
    "nested model)  [default: the last spatial feature map].",
)
@click.option(
    "--save-maps",
    is_flag=True,
    help="Also write each raw map as an 8-bit grayscale PNG at its image's own size "
    "into -o/maps/ (255 = most important), for other tools.",
)
@inference_options(batch_size=16, ray=False)
def command(run, inputs, output, method, target, layer, save_maps, options):
    """Show where the classification bundle RUN found each image's class (or labels).

    For every image in INPUTS (files, folders, dataset folders with --split, or - for
    paths on stdin) an overlay PNG is written into -o: the image beside its heatmap
    over it, with the predicted class and confidence (and the explained class, with
    --class). Overlays and maps are named after their image (cat.12.jpg ->
    cat.12.png, maps/cat.12.png). One CSV row per image goes to stdout as it is made:
    path,label,confidence,explained,p_explained,peak_x,peak_y (the map's hottest
    pixel, in the image's own pixels). Unreadable files are reported on stderr and
    skipped.

    A multi-label bundle gets one heatmap per label it decides present (as predict
    decides: the tempered probability at or above the label's threshold; the most
    probable label when none is), or per --class: overlays and maps are named after
    the image and the label (cat.12.haze.png), and there is one CSV row per image and
    label: label holds the image's decided labels, space-separated, confidence the
    probability of exactly that set, explained the label the map is for and
    p_explained its probability. So are several --class of a classifier.

    \b
    Example:
        imgkit explain runs/garments photos/ -o explained/
        imgkit explain runs/garments data/garments --split val -o why/ --save-maps
        imgkit explain runs/garments shoe.jpg -o why/ --method gradcam --class Sneaker
        imgkit explain runs/garments big/ -o why/ --shard 2/8 > why.2.csv
        imgkit explain runs/planet chips/ -o why/ --class haze --class cloudy
    """
    from imgkit.errors import BadInputError
    from imgkit.infer.explain import ExplainOptions, explain_inputs

    if method in GRADIENT_METHODS:
        if options.runtime == "onnx":
            raise click.UsageError(f"--method {method} follows gradients: it needs --runtime keras")
        options = dataclasses.replace(options, runtime="keras")
    shard = options.shard
    lock_output(output if shard is None else f"{output.rstrip('/')}.shard-{shard[0]}-of-{shard[1]}")
    bundle = open_run(run, ("classification", "multilabel"), options)
    out = Path(output)
    for folder in (out, out / "maps") if save_maps else (out,):
        if folder.exists() and not folder.is_dir():
            raise BadInputError(f"{folder}: exists and is not a folder")
        folder.mkdir(parents=True, exist_ok=True)
    how = ExplainOptions(method, tuple(target), layer)
    # One overlay per image and class when an image can have several: named after both.
    per_label = bundle.task == "multilabel" or len(set(target)) > 1
    rejects = []
    results = explain_inputs(bundle, inputs, stdin_for(inputs), options, how, rejects.append)
    header = shard is None or shard[0] == 1
    count, maps, last = 0, 0, None
    try:
        if header:
            click.echo(",".join(COLUMNS))
        names: set[str] = set()
        for explained in results:
            stem = explained.item.path.stem
            if per_label:
                stem += "." + re.sub(r"[^\w.+-]", "_", explained.target)
            name = unique_png_name(stem, names)
            row = _write(explained, out, name, bundle.resize, save_maps, method, per_label)
            click.echo(row)
            maps += 1
            count += explained.item is not last  # an image's rows come one after another
            last = explained.item
    finally:
        for r in rejects:
            warn(f"{r.path}: {r.reason} (skipped)")
    several = f", {maps} maps" if per_label else ""
    info(f"{count} image{'s' if count != 1 else ''} explained ({method}{several}) in {out}")


def _write(
    explained, out: Path, name: str, resize: str, save_maps: bool, method: str, per_label: bool
) -> str:
    """Write one image's overlay (and map); return its CSV row."""
    import csv
    import io

    from imgkit.data.images import open_image
    from imgkit.fileio import atomic_path
    from imgkit.infer.heatmap import map_png, normalise, overlay_panel, peak, to_own_size

    with open_image(explained.item.path) as img:
        image = img.convert("RGB")
    # Scaled again after the resize: resampling shaves a sharp peak below 1.
    heat = normalise(to_own_size(explained.heat, image.size, resize))
    caption = f"{explained.label} {explained.confidence:.2f}"
    if per_label:
        caption = f"{explained.label or '(no label)'} | {explained.target}"
        caption += f" {explained.target_proba:.2f}"
    elif explained.target != explained.label:
        caption += f" | {explained.target} {explained.target_proba:.2f}"
    panel = overlay_panel(image, heat, f"{caption} | {method}")
    with atomic_path(out / name) as tmp:
        panel.save(tmp, format="PNG")
    if save_maps:
        with atomic_path(out / "maps" / name) as tmp:
            map_png(heat).save(tmp, format="PNG")
    x, y = peak(heat)
    e = explained
    values = [str(e.item.path), e.label, f"{e.confidence:.6g}", e.target, f"{e.target_proba:.6g}"]
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow([*values, x, y])
    return buffer.getvalue()
