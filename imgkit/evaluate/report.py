"""``report``: one static HTML page about a bundle that a user can send to someone.

:func:`build_report` gathers what a run knows (settings, data counts, curves,
metrics) and, given the truth, what its predictions show: for a classifier the
confusion matrix with each cell's images, the top losses with their heatmaps
(:mod:`imgkit.infer.explain`), the most confused pairs, a reliability diagram before
and after the temperature and, for two classes, the threshold's precision/recall
curve; for a multi-label classifier the per-label scores, top losses, most confused
labels and a reliability diagram of all its (image, label) probabilities pooled
(:mod:`imgkit.evaluate.report_multilabel`); for a segmenter its worst
images as image / true mask / predicted mask / overlay panels. The page
(``index.html``) and its images go into one folder; the template escapes every text
(:mod:`imgkit.evaluate.gallery`).
"""

from __future__ import annotations

import heapq
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from imgkit import __version__
from imgkit.bundle import recorded_calibration
from imgkit.errors import BadInputError
from imgkit.evaluate.gallery import Gallery, Scored, classification_sections, worst, write_page
from imgkit.infer.options import InferOptions

WORST_MASKS = 8  # segmentation panels shown
OVERLAYS = 12  # top losses that get a heatmap


def settings_rows(bundle) -> list[tuple[str, str]]:
    """The run's settings as (name, value) text: what it is, then how it was trained."""
    meta = bundle.meta
    (h, w), channels = bundle.input_size, bundle.channels
    rows = [
        ("model", meta.get("model")),
        ("task", bundle.task),
        ("classes", ", ".join(bundle.classes)),
        (
            "input",
            f"{h}x{w}, {channels} channel(s), {bundle.resize}",
        ),
        ("epochs run", meta.get("epochs_run")),
        ("best epoch", meta.get("best_epoch")),
        ("temperature", recorded_calibration(meta).get("temperature")),
        ("threshold", bundle.threshold if bundle.task == "classification" else None),
        ("created", meta.get("created")),
    ]
    rows += [
        (f"--{k.replace('_', '-')}", v) for k, v in sorted((meta.get("train_args") or {}).items())
    ]
    return [(k, str(v)) for k, v in rows if v not in (None, "", [], {})]


def data_counts(bundle) -> tuple[str, list[str], list[list]] | None:
    """(dataset folder, header, rows of images per split and class) of the dataset the
    run was trained on, when it is still where the run says."""
    from imgkit.data.dataset import Dataset
    from imgkit.errors import ImgkitError

    where = (bundle.meta.get("dataset") or {}).get("path")
    if not where or not Path(where).is_dir():
        return None
    try:
        manifest = Dataset.load(where).manifest
    except ImgkitError:
        return None
    labels = manifest["label"].where(manifest["label"] != "", "(none)")
    if bundle.task == "multilabel":
        # Images per label (an image counts once for each of its labels), and in all.
        split = manifest["split"].repeat(labels.str.split().str.len())
        table = pd.crosstab(split.to_numpy(), np.concatenate(labels.str.split().to_numpy()))
        table.index.name = None
        totals = manifest["split"].value_counts()
    else:
        table = pd.crosstab(manifest["split"], labels)
        totals = table.sum(axis=1)
    rows = [[split, *map(int, table.loc[split]), int(totals[split])] for split in table.index]
    return str(where), ["split", *map(str, table.columns), "all"], rows


def metric_rows(metrics: dict) -> list[tuple[str, float]]:
    """The run's numbers as (name and where from, value): flat ones are the val
    split's; a split's own (a multi-label run's ``val`` and ``test``) say which."""
    rows = []
    for k, v in sorted(metrics.items()):
        if isinstance(v, dict):
            rows += [(f"{n} (training's {k} split)", x) for n, x in v.items()
                     if isinstance(x, float | int)]  # fmt: skip
        elif isinstance(v, float | int):
            rows.append((f"{k} (training's val split)", v))
    return rows


def _predict(bundle, truth: str, split: str | None) -> pd.DataFrame:
    from imgkit.infer.run import predict_inputs

    return pd.concat(list(predict_inputs(bundle, [truth], options=InferOptions(split=split))))


def _overlays(bundle, scored: Scored, gallery: Gallery) -> dict[int, str]:
    """Heatmap overlays (the default explain method) of the worst mistakes."""
    from imgkit.infer.engine import Decoder
    from imgkit.infer.explain import DEFAULT_METHOD, Explainer
    from imgkit.infer.plan import Item

    chosen = worst(scored, OVERLAYS)
    if not chosen:
        return {}
    decoder = Decoder(bundle)
    arrays = np.stack([decoder(Item(Path(scored.files[i])))[0] for i in chosen])
    heat = Explainer(bundle).heatmaps(arrays, scored.y_pred[chosen])
    links = {}
    for i, h in zip(chosen, heat, strict=True):
        caption = f"{scored.classes[scored.y_pred[i]]} ({DEFAULT_METHOD})"
        links[i] = gallery.overlay(scored.files[i], h, bundle.resize, caption)
    return links


def _classification(bundle, predictions, truth, split, gallery) -> dict:
    from imgkit.evaluate.matching import evaluate_predictions, load_truth, read_predictions
    from imgkit.evaluate.plots import plot_reliability, plot_threshold

    preds = read_predictions(predictions) if predictions else _predict(bundle, truth, split)
    matched = evaluate_predictions(preds, load_truth(truth))
    scored = matched.scored
    context = {"g": classification_sections(scored, gallery, _overlays(bundle, scored, gallery))}
    context["evaluation"] = [
        (k, v) for k, v in matched.report.summary.items() if isinstance(v, float | int)
    ]
    if scored.proba is not None:
        from imgkit.train.calibration import temper

        t = bundle.temperature
        # The CSV's probabilities are tempered (predict's default): raising them to T
        # and renormalising gives the model's own back (softmax(log p / T) inverted).
        raw = temper(scored.proba, 1.0 / t)
        curves = {f"after (T = {t:.3f})": (scored.proba, scored.y_true)}
        curves = {"before the temperature": (raw, scored.y_true), **curves}
        context["calibration"] = _link(
            plot_reliability(curves, gallery.folder / "images/calibration.png"), gallery
        )
        if len(scored.classes) == 2:
            name = scored.classes[1]
            path = gallery.folder / "images/threshold.png"
            plot_threshold(scored.proba[:, 1], scored.y_true == 1, bundle.threshold, path, name)
            context["threshold"] = _link(path, gallery)
    return context


def _segmentation(bundle, truth, split, gallery) -> dict:
    from imgkit.data.images import open_image
    from imgkit.data.masks import mask_scores
    from imgkit.infer.run import segment_inputs
    from imgkit.infer.segment import class_values, is_multiclass, overlay_panel

    colors = None
    if is_multiclass(bundle):  # multi-class masks: each image's mean IoU over the classes
        from imgkit.data.classmasks import class_colors, confusion, iou_summary

        colors, k = class_colors(bundle.meta), len(bundle.classes)

    def mask_of(item):
        return item.proba > 0.5 if colors is None else class_values(item.proba)

    def score(item) -> float:
        if colors is None:
            return float(mask_scores(mask_of(item), item.truth)["iou"])
        matrix = confusion(mask_of(item), item.truth, k)
        return iou_summary(matrix, bundle.classes)["mean_iou"]

    kept: list = []  # a heap of (-iou, n, item): the worst stay
    ious = []
    for n, item in enumerate(
        segment_inputs(bundle, [truth], options=InferOptions(batch_size=16, split=split))
    ):
        if item.truth is None:
            continue
        iou = score(item)
        ious.append(iou)
        heapq.heappush(kept, (-iou, n, item))
        if len(kept) > WORST_MASKS:
            heapq.heappop(kept)
    if not ious:
        raise BadInputError(f"{truth}: no image with a true mask to score")
    panels = []
    for neg, _, item in sorted(kept, key=lambda k: (k[0], k[1]), reverse=True):
        with open_image(item.path) as img:
            panel = overlay_panel(img, mask_of(item), item.truth, colors)
        panel.thumbnail((1100, 400))
        panels.append({"src": gallery.save(panel), "name": str(item.path), "iou": -neg})
    summary = [
        ("images", len(ious)),
        ("mean IoU", float(np.mean(ious))),
        ("median IoU", float(np.median(ious))),
    ]
    return {"panels": panels, "evaluation": summary}


def _link(path: Path, gallery: Gallery) -> str:
    return os.path.relpath(path, gallery.folder).replace(os.sep, "/")


def build_report(
    bundle,
    out: str | os.PathLike,
    predictions: str | None = None,
    truth: str | None = None,
    split: str | None = None,
) -> Path:
    """Write ``out/index.html`` and its images about ``bundle``; the page's path.

    Args:
        bundle: a loaded Bundle.
        out: the folder (made if missing; its images/ is replaced).
        predictions: a classification (or multi-label) predictions CSV to show (needs
            ``truth``).
        truth: a dataset folder (or, for classification, a path,label CSV); without
            ``predictions`` the bundle predicts or segments its ``split`` first.
        split: the split of ``truth`` to run on (default as predict chooses).

    Raises:
        BadInputError: predictions without a truth, or predictions for a segmenter.
    """
    if predictions and not truth:
        raise BadInputError("--predictions needs --truth: the page compares them")
    if predictions and bundle.task == "segmentation":
        raise BadInputError("--predictions is for classification bundles; give --truth DATA")
    folder = Path(out)
    shutil.rmtree(folder / "images", ignore_errors=True)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    gallery = Gallery(folder)
    context = {"run": str(bundle.path), "version": __version__, "task": bundle.task}
    context.update(settings=settings_rows(bundle), data=data_counts(bundle))
    context["metrics"] = metric_rows(bundle.metrics)
    curves = Path(bundle.path) / "curves.png"
    if curves.is_file():
        shutil.copyfile(curves, folder / "images/curves.png")
    context["curves"] = "images/curves.png" if curves.is_file() else None
    context.update(g=None, evaluation=None, calibration=None, threshold=None, panels=None)
    context.update(ml=None, calibration_ece=None)
    context.update(predictions=predictions, truth=truth)
    if truth and bundle.task == "segmentation":
        context.update(_segmentation(bundle, truth, split, gallery))
    elif truth and bundle.task == "multilabel":
        from imgkit.evaluate.report_multilabel import multilabel_sections

        context.update(multilabel_sections(bundle, predictions, truth, split, gallery))
    elif truth:
        context.update(_classification(bundle, predictions, truth, split, gallery))
    return write_page(folder, "report.html", **context)
