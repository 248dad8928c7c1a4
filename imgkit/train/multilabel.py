"""Training for multi-label datasets: several labels per image, one sigmoid unit each.

Called by :func:`imgkit.train.trainer.train` when the dataset's task is
``multilabel``. It shares the classifiers' epoch loop (checkpoints, ``--resume``,
early stopping on the val loss, augmentation, cached features) and differs in the
model's output (the registered model's last Dense layer becomes one sigmoid unit per
label, :func:`imgkit.models.multilabel_output`), the loss (binary cross-entropy over
every label), the calibration and the decisions:

- one temperature shared by all labels, fitted on val (see
  :func:`imgkit.train.multilabel_scores.fit_shared_temperature` for why not one each);
- one threshold per label on the tempered probabilities, fitted on val to maximise
  that label's F1 (``--threshold auto`` or ``f1``) or F2 (``f2``), or one value for all;
- scores on val and test: micro/macro F1 and F2, mAP, per-label AUC
  (:func:`imgkit.train.multilabel_scores.scores`).

``--weights RUN/model.keras`` starts from a bundle's model, as for classification
(:mod:`imgkit.models.bundled`): a multi-label bundle on the same labels keeps its head;
any other (other labels, or a single-label classifier) gets one sigmoid unit per label
in place of its last Dense layer, on the same body.
"""

from __future__ import annotations

import numpy as np

from imgkit.bundle import calibration_meta
from imgkit.errors import BadDatasetError, BadInputError
from imgkit.train import multilabel_scores as mls


def _split(ds, split: str, s, say):
    """One split's decoded images (through the dataset's cache) and its 0/1 label matrix."""
    if not ds.cache_file(split, s.input_size, s.channels, s.resize).is_file():
        say(f"decoding {len(ds.rows(split))} {split} images (once; cached in the dataset)")
    return ds.arrays(split, s.input_size, s.channels, s.resize), ds.label_matrix(split)


def _predict(net, x, batch_size: int) -> np.ndarray:
    out = [
        np.asarray(net.predict_on_batch(np.asarray(x[i : i + batch_size], np.float32)))
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(out).astype(np.float64)


def _decide(run, net, val, threshold, say) -> tuple[dict, dict, list]:
    """Temperature and thresholds from val; scores of val and test with them."""
    s, ds = run.settings, run.ds
    probs, truth, notes = {}, {}, []
    if val is not None:
        probs["val"], truth["val"] = _predict(net, val[0], s.batch_size), val[1]
    if "test" in ds.splits():
        test_x, truth["test"] = _split(ds, "test", s, say)
        probs["test"] = _predict(net, test_x, s.batch_size)
    temperature = 1.0
    if val is None:
        notes.append("no val split: no temperature, thresholds 0.5 (or the --threshold value)")
    elif s.calibrate:
        temperature = mls.fit_shared_temperature(probs["val"], truth["val"])
        say(f"temperature {temperature:g} (one for all labels) fitted on val")
    probs = {k: mls.temper(p, temperature) for k, p in probs.items()}
    metric, value = threshold
    if metric is None and value is None:
        metric = "f1"  # multi-label's default: each label's F1 on val
    if val is None:
        metric = None
        thresholds = np.full(len(ds.classes), 0.5 if value is None else float(value))
    else:
        thresholds = mls.fit_thresholds(probs["val"], truth["val"], metric, value)
    metrics = {k: mls.scores(probs[k], truth[k], thresholds, ds.classes) for k in probs}
    for k, m in metrics.items():
        say(
            f"{k}: micro F1 {m['micro_f1']}, macro F1 {m['macro_f1']}, "
            f"mean F2 {m['mean_f2']}, mAP {m['mAP']}"
        )
    decision = {
        "temperature": float(temperature),
        "thresholds": {c: round(float(t), 6) for c, t in zip(ds.classes, thresholds, strict=True)},
        "threshold_metric": metric or ("fixed" if value is not None else "none"),
    }
    return metrics, decision, notes


def train_multilabel(run, report, threshold) -> dict:
    """Train a multi-label model and write the bundle (see :func:`imgkit.train.trainer.train`).

    Args:
        run: the started run (:class:`imgkit.train.run.Run`), task multilabel.
        report: where progress goes (:class:`imgkit.train.loop.Reporting`).
        threshold: ``(metric, value)`` from :func:`imgkit.train.thresholds.parse_threshold`.

    Returns:
        The bundle's imgkit.json content.
    """
    from imgkit.train.loop import FitData, fit_run
    from imgkit.train.recipe import compile_model, precision, use_mixed_precision
    from imgkit.train.run import run_meta, source_info, transfer_info, write_bundle

    s, ds, say = run.settings, run.ds, report.say
    if s.class_weight != "none":
        # Each label is its own binary case; its threshold, fitted on val, already
        # moves with how rare it is.
        raise BadInputError(
            "--class-weight: not for multi-label datasets (per-label "
            "thresholds fitted on val take each label's rarity into account)"
        )
    if threshold[0] == "balanced":
        raise BadInputError("--threshold balanced is for binary models; multi-label: f1, f2, P")
    train_x, train_y = _split(ds, "train", s, say)
    if len(train_x) == 0:
        raise BadDatasetError(f"{ds.root}: the train split is empty")
    val = _split(ds, "val", s, say) if "val" in ds.splits() else None
    data = FitData(np.asarray(train_x), train_y, None,
                   (np.asarray(val[0]), val[1]) if val is not None else None, True,
                   "val_loss" if val is not None else "loss")  # fmt: skip
    mixed = use_mixed_precision(s.mixed_precision)

    def compile_fn(model, steps, lr=None, schedule=None, epochs=None):
        compile_model(model, "sigmoid", lr or s.lr, schedule or s.schedule,
                      (epochs or s.epochs) * steps, s.label_smoothing)  # fmt: skip

    with precision(mixed):
        with run.strategy_scope():
            fit = fit_run(run.out, s, run.state, data, compile_fn, run.dataset_state, report,
                          len(ds.classes), source=run.source, multilabel=True)  # fmt: skip
        metrics, decision, notes = _decide(run, fit.net, val, threshold, say)
        meta = {
            "task": "multilabel",
            "model": s.model,
            "classes": ds.classes,
            "input_size": list(s.input_size),
            "channels": s.channels,
            "resize": s.resize,
            "pixels": {**run.spec.pixels, "inside_model": True},
            "polarity": None,
            "output": "multilabel",
            **calibration_meta(decision["temperature"]),
            "thresholds": decision["thresholds"],
            "threshold_metric": decision["threshold_metric"],
            **run_meta(run, fit, metrics, data.monitor, mixed),
        }
        if notes:
            meta["notes"] = notes
        if run.spec.takes_weights:
            meta["transfer"] = transfer_info(fit.net, s, fit.features_mode, fit.head_first)
        if run.source is not None:
            meta["from_bundle"] = source_info(run.source, ds.classes, ds.task)
        return write_bundle(run.out, fit, meta, title=f"{s.model} on {ds.root.name} (multi-label)")
