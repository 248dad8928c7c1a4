"""``imgkit segment``: masks for images with a segmentation bundle; PNGs out."""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click

from imgkit.commands._common import (
    info,
    lock_output,
    output_option,
    show_progress,
    unique_png_name,
    warn,
)
from imgkit.commands._inference import inference_options, open_run, stdin_for


@click.command(name="segment")
@click.argument("run")
@click.argument("inputs", nargs=-1, required=True)
@output_option(required=True, help_text="Folder for the mask PNGs (made if missing).")
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.5,
    show_default=True,
    help="A pixel is object where P(object) is above this (binary masks; a multi-class "
    "bundle gives each pixel its most probable class).",
)
@click.option(
    "--overlay",
    "overlay_dir",
    default=None,
    metavar="DIR",
    help="Also write side-by-side panels (image, mask, mask over image, and the true "
    "mask for a dataset split with masks) into DIR.",
)
@click.option(
    "--tta",
    is_flag=True,
    help="Average each image's map with its mirror image's (flipped back): two model "
    "passes, smoother edges.",
)
@inference_options(batch_size=16, classify=False)
def command(run, inputs, output, threshold, overlay_dir, tta, options):
    """Segment images with the bundle RUN: one mask PNG per image in -o.

    INPUTS are image files, folders (walked recursively, sorted), dataset folders
    (their --split) or - (paths on stdin). Each mask is a 0/255 grayscale PNG at its
    image's own size, named after the image (cell7.jpg -> cell7.png), written under a
    temporary name and renamed when complete. Unreadable files are reported on
    stderr and skipped. Prints the output folder on stdout and a summary on stderr.

    A multi-class bundle (trained on masks with --mask-classes or --mask-colors)
    writes palette PNGs instead: each pixel's value is its most probable class, the
    mask value the training data used (0 the background), and the palette holds the
    classes' colours; overlays tint each class in its colour.

    \b
    Example:
        imgkit segment runs/seg new_images/ -o masks_out/ --overlay overlays/
        imgkit segment runs/seg data/seg --split val -o val_masks/ --tta
        imgkit eval masks_out/ --truth data/seg
        imgkit segment runs/seg big/ -o masks/ --shard 3/8     # a job array
        imgkit segment runs/scenes photos/ -o masks/ --overlay over/   # multi-class:
                                                  # palette PNGs of the class values

    With --shard, the N shards may share one -o folder; an image name met twice
    (a/x.png, b/x.png) gets its -2 suffix only within one shard.
    """
    from imgkit.data.images import open_image
    from imgkit.data.masks import mask_scores, write_mask_png
    from imgkit.infer.run import segment_inputs
    from imgkit.infer.segment import is_multiclass, overlay_panel

    shard = options.shard
    # Shards of one job write disjoint masks into one folder: each holds its own lock.
    lock_output(output if shard is None else f"{output.rstrip('/')}.shard-{shard[0]}-of-{shard[1]}")
    bundle = open_run(run, "segmentation", options)
    classes = _MultiClass(bundle) if is_multiclass(bundle) else None
    if classes is not None and _given("threshold"):
        raise click.BadParameter(
            "a multi-class bundle gives each pixel its most probable class; drop --threshold",
            param_hint="--threshold",
        )
    out = Path(output)
    overlays = Path(overlay_dir) if overlay_dir else None
    _make_folders(out, overlays)
    rejects = []
    names: set[str] = set()
    count, fraction, ious = 0, 0.0, []
    started = time.perf_counter()
    bar = _progress_bar()

    def finish(item, name: str) -> tuple[float, float | None]:
        # Thresholding and writing run in worker threads (PIL's encoder releases the
        # GIL) while the main thread feeds the model the next batch.
        if classes is not None:
            return classes.finish(item, out / name, overlays and overlays / name)
        mask = item.proba > threshold
        write_mask_png(out / name, mask)
        if overlays is not None:
            with open_image(item.path) as img:
                panel = overlay_panel(img, mask, item.truth)
            _save_png(panel, overlays / name)
        iou = mask_scores(mask, item.truth)["iou"] if item.truth is not None else None
        return float(mask.mean()), iou

    def collect(future) -> None:
        nonlocal count, fraction
        share, iou = future.result()
        count += 1
        fraction += share
        if iou is not None:
            ious.append(iou)
        if bar is not None:
            bar.update(1)

    items = segment_inputs(bundle, inputs, stdin_for(inputs), options, rejects.append, tta)
    pending: deque = deque()
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            for item in items:
                name = unique_png_name(item.path.stem, names)
                pending.append(pool.submit(finish, item, name))
                # Bounded: memory stays flat however many images there are.
                while len(pending) > 2 * options.batch_size:
                    collect(pending.popleft())
            while pending:
                collect(pending.popleft())
    finally:
        if bar is not None:
            bar.close()
        # Also before the error when nothing could be segmented: it says how many.
        for r in rejects:
            warn(f"{r.path}: {r.reason} (skipped)")
    seconds = time.perf_counter() - started
    if classes is not None:
        ious = [classes.mean_iou()] if classes.scored else []
    info(_summary(out, count, seconds, tta, fraction, ious, len(rejects), classes is not None))
    click.echo(str(out))


def _make_folders(*folders: Path | None) -> None:
    from imgkit.errors import BadInputError

    for folder in folders:
        if folder is not None:
            if folder.exists() and not folder.is_dir():
                raise BadInputError(f"{folder}: exists and is not a folder")
            folder.mkdir(parents=True, exist_ok=True)


def _progress_bar():
    if not show_progress():
        return None
    from tqdm import tqdm

    return tqdm(desc="segmenting", unit="img", leave=False)


def _summary(out, count, seconds, tta, fraction, ious, skipped, multiclass=False) -> str:
    line = f"{count} masks in {out} ({count / max(seconds, 1e-9):.1f} img/s"
    line += f"{', with TTA' if tta else ''})"
    if count:
        what = "non-background" if multiclass else "object"
        line += f"; mean {what} share {fraction / count:.3f}"
    if ious:
        line += f"; mean IoU against the dataset's masks {sum(ious) / len(ious):.4f}"
    if skipped:
        line += f"; {skipped} skipped"
    return line


def _save_png(image, path: Path) -> None:
    from imgkit.fileio import atomic_path

    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def _given(name: str) -> bool:
    """Whether the option ``name`` was given on the command line (not its default)."""
    source = click.get_current_context().get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


class _MultiClass:
    """A multi-class bundle's masks: palette PNGs of class values, class-coloured
    overlays, and the pixel counts against a dataset's true masks (thread-safe)."""

    def __init__(self, bundle):
        import threading

        import numpy as np

        from imgkit.data.classmasks import class_colors

        self.names = bundle.classes
        self.colors = class_colors(bundle.meta)
        self.matrix = np.zeros((len(self.names), len(self.names)), dtype=np.int64)
        self.scored = 0
        self._lock = threading.Lock()

    def finish(self, item, path: Path, overlay: Path | None) -> tuple[float, None]:
        from imgkit.data.classmasks import confusion, write_class_png
        from imgkit.data.images import open_image
        from imgkit.infer.segment import class_values, overlay_panel

        values = class_values(item.proba)
        write_class_png(path, values, self.colors)
        if overlay:
            with open_image(item.path) as img:
                _save_png(overlay_panel(img, values, item.truth, self.colors), overlay)
        if item.truth is not None and item.truth.shape == values.shape:
            counts = confusion(values, item.truth, len(self.names))
            with self._lock:
                self.matrix += counts
                self.scored += 1
        return float((values > 0).mean()), None

    def mean_iou(self) -> float:
        from imgkit.data.classmasks import iou_summary

        return iou_summary(self.matrix, self.names)["mean_iou"]
