"""``report --truth`` for a multi-label bundle: per-label scores, top losses, confused
labels and a reliability diagram.

Predictions (a CSV of ``imgkit predict``, read a chunk at a time, or the bundle
predicting the truth's split batch by batch) stream past: each image is matched to its
true labels and scored as ``eval`` scores it
(:class:`imgkit.evaluate.multilabel_eval.MultilabelTally`), its summed per-label log
loss decides whether it stays among the worst :data:`TOP_LOSSES` (a heap: no other
image is kept), and its missed and extra labels add to a label-by-label count. The
worst images get a heatmap (``explain``'s default method) of their worst-wrong label:
the wrong label (missed or extra) with the largest log loss.

The reliability diagram pools every (image, label) probability: in each tenth of 0..1,
the mean probability against the fraction of those labels truly present, before the
bundle's temperature (the probabilities given back: ``sigmoid(T * logit(p))``, as the
predictions are tempered) and after it, with the expected calibration error of each.
Each curve is three numbers a bin, added to chunk by chunk
(:class:`imgkit.evaluate.plots.ReliabilityBins`).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from imgkit.errors import BadInputError
from imgkit.evaluate.gallery import TOP_LOSSES, Gallery
from imgkit.infer.options import InferOptions

OVERLAYS = 12  # top losses that get a heatmap
PAIRS = 8  # most confused label pairs shown
CHUNK = 4096  # predictions CSV rows read at a time
_EPS = 1e-15  # probabilities are clipped here before a log, as eval's log loss does


def _csv_chunks(source: str) -> Iterator[pd.DataFrame]:
    """A predictions CSV, every cell a string, :data:`CHUNK` rows at a time."""
    try:
        reader = pd.read_csv(
            source, dtype=str, keep_default_na=False, encoding="utf-8-sig", chunksize=CHUNK
        )
        with reader:
            yield from reader
    except (ValueError, OSError) as e:
        raise BadInputError(f"{source}: cannot read the CSV ({e})") from e


def _chunks(bundle, predictions: str | None, truth: str, split: str | None):
    if predictions:
        return _csv_chunks(predictions)
    from imgkit.infer.run import predict_inputs

    return predict_inputs(bundle, [truth], options=InferOptions(split=split))


def label_losses(y: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """(n, labels) binary log losses: ``-log p`` where a label is true, ``-log(1 - p)``
    where it is not."""
    p = np.clip(proba, _EPS, 1 - _EPS)
    return -np.where(y, np.log(p), np.log(1 - p))


def _worst_label(y: np.ndarray, pred: np.ndarray, loss: np.ndarray) -> int:
    """The wrong label (missed or extra) with the largest loss; the least sure right
    label when none is wrong."""
    wrong = y != pred
    return int(np.argmax(np.where(wrong, loss, -1.0)) if wrong.any() else np.argmax(loss))


def _scan(bundle, predictions, truth: str, split, name: str):
    """Stream the predictions: (tally, worst images as dicts worst first, confusion counts
    missed x extra, reliability bins before and after the temperature)."""
    from imgkit.evaluate.matching import _image_file
    from imgkit.evaluate.multilabel_eval import MultilabelTally, load_multilabel_truth
    from imgkit.evaluate.plots import ReliabilityBins
    from imgkit.train.multilabel_scores import temper

    tally = MultilabelTally(load_multilabel_truth(truth), name)
    temperature = float(bundle.temperature)
    before, after = ReliabilityBins(), ReliabilityBins()
    k = len(tally.classes)
    confused = np.zeros((k, k), dtype=np.int64)  # [missed label, extra label]: images
    kept: list = []  # a heap of (summed loss, -order, image): the worst stay
    order = 0
    for chunk in _chunks(bundle, predictions, truth, split):
        m = tally.add(chunk)
        after.add(m.proba, m.y)
        before.add(temper(m.proba, 1.0 / temperature), m.y)
        losses = label_losses(m.y, m.proba)
        missed, extra = m.y & ~m.pred, m.pred & ~m.y
        confused += missed.T.astype(np.int64) @ extra.astype(np.int64)
        for r, (row, t) in enumerate(zip(m.rows, m.truth_rows, strict=True)):
            image = {
                "name": str(chunk["path"].iloc[row]),
                "truth_row": t,
                "y": m.y[r],
                "pred": m.pred[r],
                "proba": m.proba[r],
                "loss": losses[r],
            }
            heapq.heappush(kept, (float(losses[r].sum()), -order, image))
            order += 1
            if len(kept) > TOP_LOSSES:
                heapq.heappop(kept)
    worst = [image for _, _, image in sorted(kept, key=lambda e: (e[0], e[1]), reverse=True)]
    for image in worst:
        image["file"] = _image_file(image["name"], image.pop("truth_row"), tally.truth)
    calibration = {"before the temperature": before, f"after (T = {temperature:.3f})": after}
    return tally, worst, confused, calibration


def _overlays(bundle, worst: list[dict], gallery: Gallery) -> list[str | None]:
    """Heatmap overlays (explain's default method) of each worst image's worst label."""
    from imgkit.errors import BadImageError
    from imgkit.infer.engine import Decoder
    from imgkit.infer.explain import DEFAULT_METHOD, Explainer
    from imgkit.infer.plan import Item

    decoder = Decoder(bundle)
    chosen, arrays = [], []
    for i, image in enumerate(worst[:OVERLAYS]):
        try:
            arrays.append(decoder(Item(Path(image["file"])))[0])
        except (BadImageError, OSError):  # the page says so by showing no heatmap
            continue
        chosen.append(i)
    links: list[str | None] = [None] * len(worst)
    if not chosen:
        return links
    targets = [worst[i]["explained"] for i in chosen]
    heat = Explainer(bundle).heatmaps(np.stack(arrays), np.array(targets))
    for i, h, t in zip(chosen, heat, targets, strict=True):
        caption = f"{bundle.classes[t]} {worst[i]['proba'][t]:.2f} ({DEFAULT_METHOD})"
        links[i] = gallery.overlay(worst[i]["file"], h, bundle.resize, caption)
    return links


def _number(v) -> float | int | None:
    if v is None or (isinstance(v, float) and v != v):
        return None  # NaN: a label with no positives has no recall, AP or AUC
    return v.item() if hasattr(v, "item") else v


def multilabel_sections(
    bundle, predictions: str | None, truth: str, split: str | None, gallery: Gallery
) -> dict:
    """What the page shows of a multi-label bundle against ``truth`` (a multi-label
    dataset folder): the scores, a per-label table, the top losses (each with its true,
    predicted, missed and extra labels and a heatmap of its worst-wrong label), the
    most confused label pairs (a label predicted where another was true and missed) and
    the reliability diagram of every (image, label) probability, before and after the
    temperature.

    Raises:
        BadInputError: the predictions do not fit the truth, or none matched it.
    """
    name = str(predictions) if predictions else "predictions"
    tally, worst, confused, calibration = _scan(bundle, predictions, truth, split, name)
    summary, per_label, unmatched = tally.result()
    classes = tally.classes

    def names(mask) -> list[str]:
        return [c for c, on in zip(classes, mask, strict=True) if on]

    for image in worst:
        image["explained"] = _worst_label(image["y"], image["pred"], image["loss"])
    links = _overlays(bundle, worst, gallery)
    losses = [
        {
            "src": gallery.thumbnail(image["file"]),
            "overlay": link,
            "name": image["name"],
            "true": names(image["y"]),
            "pred": names(image["pred"]),
            "missed": names(image["y"] & ~image["pred"]),
            "extra": names(image["pred"] & ~image["y"]),
            "explained": classes[image["explained"]],
            "loss": float(image["loss"].sum()),
        }
        for image, link in zip(worst, links, strict=True)
    ]
    pairs = [
        {"missed": classes[a], "extra": classes[b], "count": int(confused[a, b])}
        for a, b in sorted(np.argwhere(confused > 0).tolist(), key=lambda p: -confused[p[0], p[1]])
    ][:PAIRS]
    columns = ["label", "precision", "recall", "f1", "f2", "ap", "auc", "support"]
    table = [{c: _number(row[c]) for c in columns} for _, row in per_label.iterrows()]
    evaluation = [(k, v) for k, v in summary.items() if isinstance(v, float | int)]
    if unmatched:
        evaluation.append(("predicted images not in the truth", len(unmatched)))
    ml = {"labels": table, "losses": losses, "pairs": pairs}
    return {"ml": ml, "evaluation": evaluation, **_calibration(calibration, gallery)}


def _calibration(curves: dict, gallery: Gallery) -> dict:
    """The reliability diagram's link and each curve's expected calibration error."""
    from imgkit.evaluate.plots import plot_reliability

    axes = ("predicted probability (every image and label)", "fraction of labels present")
    path = gallery.folder / "images/calibration.png"
    plot_reliability(curves, path, axes, "(image, label) pairs")
    eces = [(name, curve.ece()) for name, curve in curves.items()]
    return {"calibration": "images/calibration.png", "calibration_ece": eces}
