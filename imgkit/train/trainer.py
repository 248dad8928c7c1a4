"""Train a registered model on a dataset folder and write a model bundle.

One public function, :func:`train`, in named steps: the settings and the output folder
(:func:`start_run`), the data (:func:`load_training_data`), the loop
(:func:`imgkit.train.loop.fit_run`), scoring and calibration
(:func:`score_and_calibrate`), and the bundle (:func:`write_bundle`). It is plain: no
click, no printing; progress goes to the callbacks the caller passes.

After training, a temperature is fitted on the validation split
(:mod:`imgkit.train.calibration`) and stored in imgkit.json; predict and tta apply it.
Segmentation datasets go to :mod:`imgkit.train.segmentation`, which shares every step
but the data and the scores.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from imgkit.bundle import calibration_meta
from imgkit.data.polarity import detect_polarity
from imgkit.errors import BadDatasetError
from imgkit.train.calibration import fit_temperature, log_loss, temper
from imgkit.train.recipe import class_weights, sample_weights, targets
from imgkit.train.run import (
    Run,
    run_meta,
    source_info,
    start_run,
    transfer_info,
    write_bundle,
)
from imgkit.train.scoring import decision_threshold, score, split_arrays
from imgkit.train.settings import RunSettings
from imgkit.train.thresholds import parse_threshold

# Up to this many bytes of decoded train+val images are copied into memory (the
# fastest path); bigger sets stream from the memory-mapped cache.
IN_MEMORY_LIMIT = 2 * 1024**3


def train(
    dataset_dir: str | os.PathLike,
    output: str | os.PathLike,
    settings: RunSettings | None = None,
    *,
    threshold: str | float | None = None,
    cache_features: bool | None = None,
    resume: bool = False,
    overwrite: bool = False,
    trust: bool | None = None,
    devices: str | int = "auto",
    callbacks_extra: list | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    on_batch: Callable[[int, int, int], None] | None = None,
    on_info: Callable[[str], None] | None = None,
    **given,
) -> dict:
    """Train ``model`` on a dataset folder and write a complete bundle to ``output``.

    Adam on cross-entropy (binary for sigmoid models, optionally label-smoothed and
    class-weighted), the model's learning-rate schedule, early stopping on the
    validation loss (the training loss when there is no val split) that restores the
    best epoch's weights, a checkpoint after every epoch, and a temperature fitted on
    the validation split.

    Settings are keyword arguments, the fields of
    :class:`~imgkit.train.settings.RunSettings` (``imgkit train --help`` gives each
    model's defaults), or one ``settings`` value; None means the default, or on
    ``resume`` "as the run was started".

    Args:
        dataset_dir: a dataset folder made by ``imgkit prep`` (classification).
        output: the bundle folder to write.
        threshold: sigmoid models only: "f1" or "auto" (the threshold on P(classes[1])
            that maximises val F1), "balanced" (val balanced accuracy), a number in
            (0, 1), or None/"none" (default: the argmax, 0.5); stored in imgkit.json
            (see :mod:`imgkit.train.thresholds`) and used by predict and tta.
        cache_features: None (default) trains the head on features computed once
            whenever the backbone is frozen and augmentation is off; False always
            runs every epoch through the whole model.
        resume: continue the interrupted run in ``output`` at its next epoch.
        overwrite: replace a bundle or an interrupted run already in ``output``.
        trust: ``weights`` a bundle whose model carries code (Lambda layers): run it.
            None: as ``IMGKIT_TRUST_CODE`` says.
        devices: "auto" (every GPU when there are several, else one device) or a device
            count; the global batch is split across them. With a multi-worker
            ``TF_CONFIG``, every worker trains and only the chief writes ``output``
            (see :mod:`imgkit.train.distribute`).
        callbacks_extra: Keras callbacks given to the run's one ``model.fit`` call.
        on_epoch: called after each epoch's checkpoint with a dict: epoch (1-based),
            epochs, loss, accuracy, val_loss, val_accuracy (when there is a val
            split), lr, seconds, improved, best_epoch, stopping.
        on_batch: called after each training step with (epoch, step, steps).
        on_info: called with one-line messages worth showing.

    Returns:
        The bundle's imgkit.json content.

    Raises:
        BadDatasetError: not a classification dataset, fewer than 2 classes, no train split.
        BadInputError: unknown model, bad settings, a weights file that does not fit,
            or ``resume`` with another dataset, model or settings.
        UntrustedCodeError: ``weights`` a bundle whose model carries code, not trusted.
        OfflineError: ``weights="imagenet"``, the file is not cached and cannot be
            downloaded (the message says which file to put where).
        OutputExistsError: ``output`` holds a bundle or an interrupted run and neither
            ``overwrite`` nor ``resume`` was given.
    """
    from imgkit.train.distribute import placed
    from imgkit.train.loop import Reporting

    report = Reporting(
        on_epoch, on_batch, on_info or (lambda _msg: None), list(callbacks_extra or [])
    )
    threshold_metric, threshold_value = parse_threshold(threshold)  # fail before training
    # First: the devices must be chosen before anything starts TensorFlow.
    with placed(devices, output, resume=resume) as place:
        run = start_run(
            dataset_dir,
            place.output,
            settings,
            given,
            resume=resume,
            overwrite=overwrite,
            trust=trust,
        )
        run.placement = place
        if place.strategy is not None:
            report.say(place.describe(run.settings.batch_size))
        return _train_task(run, report, cache_features, (threshold_metric, threshold_value))


def _train_task(run: Run, report, cache_features, threshold) -> dict:
    """Train ``run`` (segmentation or classification) and write its bundle."""
    from imgkit.train.loop import fit_run
    from imgkit.train.recipe import compile_model, precision, use_mixed_precision

    if run.ds.task == "segmentation":
        from imgkit.train.segmentation import train_segmentation

        return train_segmentation(run, report)
    if run.ds.task == "multilabel":
        from imgkit.train.multilabel import train_multilabel

        return train_multilabel(run, report, threshold)
    if threshold[0] == "f2":
        raise BadDatasetError(
            f"{run.ds.root}: --threshold f2 is for multi-label datasets (binary: f1, balanced)"
        )
    s, ds = run.settings, run.ds
    data, labels, polarity, per_class = load_training_data(run, report.say)
    spec = run.spec
    output_kind = spec.output_for(len(ds.classes))
    mixed = use_mixed_precision(s.mixed_precision)
    if mixed and run.state is None:
        report.say("mixed precision (float16 compute, float32 weights and output)")

    def compile_fn(model, steps, lr=None, schedule=None, epochs=None):
        # The overrides are the head-first phase's own rate and length.
        compile_model(model, output_kind, lr or s.lr, schedule or s.schedule,
                      (epochs or s.epochs) * steps, s.label_smoothing)  # fmt: skip

    with precision(mixed):
        with run.strategy_scope():
            fit = fit_run(run.out, s, run.state, data, compile_fn, run.dataset_state, report,
                          len(ds.classes), cache_features, source=run.source)  # fmt: skip
        metrics, extra = score_and_calibrate(
            run, fit.net, data, labels, output_kind, threshold, report.say
        )
        meta = {
            **_classification_meta(run, fit, output_kind, polarity, per_class),
            **run_meta(run, fit, metrics, data.monitor, mixed),
            **extra,
        }
        return write_bundle(run.out, fit, meta, title=f"{s.model} on {ds.root.name}")


def _classification_meta(run: Run, fit, output_kind: str, polarity, per_class) -> dict:
    """imgkit.json's keys that say what a classification bundle's model takes and gives."""
    s, ds, spec = run.settings, run.ds, run.spec
    meta = {
        "task": "classification",
        "model": s.model,
        "classes": ds.classes,
        "input_size": list(s.input_size),
        "channels": s.channels,
        "resize": s.resize,
        "pixels": {**spec.pixels, "inside_model": True},
        "polarity": polarity,
        "output": output_kind,
    }
    if spec.takes_weights:
        meta["transfer"] = transfer_info(fit.net, s, fit.features_mode, fit.head_first)
    if run.source is not None:
        meta["from_bundle"] = source_info(run.source, ds.classes, ds.task)
    if per_class is not None:
        meta["class_weights"] = {
            c: round(float(w), 6) for c, w in zip(ds.classes, per_class, strict=True)
        }
    return meta


def load_training_data(run: Run, say):
    """The train and val splits as the loop takes them, with what they say about the data.

    Returns:
        (FitData, labels {split: class indices}, polarity, per-class weights or None).
    """
    from imgkit.train.loop import FitData

    s, ds = run.settings, run.ds
    num_classes = len(ds.classes)
    output_kind = run.spec.output_for(num_classes)
    train_x, train_y = split_arrays(ds, "train", s.input_size, s.channels, s.resize, say)
    if len(train_x) == 0:
        raise BadDatasetError(f"{ds.root}: the train split is empty")
    val = None
    if "val" in ds.splits():
        val = split_arrays(ds, "val", s.input_size, s.channels, s.resize, say)
    nbytes = train_x.nbytes + (val[0].nbytes if val is not None else 0)
    in_memory = nbytes < IN_MEMORY_LIMIT
    if in_memory:
        # One copy into RAM: later epochs index it without touching the disk.
        train_x = np.asarray(train_x)
        val = (np.asarray(val[0]), val[1]) if val is not None else None
    if val is None and run.state is None:
        say("no val split: early stopping watches the training loss, and no temperature is fitted")
    per_class = class_weights(train_y, num_classes, s.class_weight)
    data = FitData(
        x=train_x,
        y=targets(train_y, output_kind, num_classes, s.label_smoothing),
        weights=sample_weights(train_y, per_class),
        val=(val[0], targets(val[1], output_kind, num_classes, s.label_smoothing))
        if val is not None
        else None,
        in_memory=in_memory,
        monitor="val_loss" if val is not None else "loss",
    )
    labels = {"train": train_y, **({"val": val[1]} if val is not None else {})}
    return data, labels, detect_polarity(train_x, seed=s.seed), per_class


def score_and_calibrate(run: Run, net, data, labels: dict, output_kind: str, threshold, say):
    """Score val and test, fit the temperature on val, choose the decision threshold.

    Returns:
        (metrics {split: {...}}, imgkit.json keys: temperature, threshold, notes).
    """
    s, ds = run.settings, run.ds
    metrics, probs, notes = {}, {}, []
    if data.val is not None:
        metrics["val"], probs["val"] = score(
            net, data.val[0], labels["val"], data.val[1], output_kind, s.label_smoothing,
            s.batch_size,
        )  # fmt: skip
    if "test" in ds.splits():
        test_x, labels["test"] = split_arrays(ds, "test", s.input_size, s.channels, s.resize, say)
        test_t = targets(labels["test"], output_kind, len(ds.classes), s.label_smoothing)
        metrics["test"], probs["test"] = score(
            net, test_x, labels["test"], test_t, output_kind, s.label_smoothing, s.batch_size
        )
    if data.monitor == "loss":
        notes.append("no val split: early stopping watched the training loss")
    temperature = None
    if data.val is None:
        notes.append(
            "no val split: no temperature calibration (probabilities as the model gives them)"
        )
    elif s.calibrate:
        temperature = fit_temperature(probs["val"], labels["val"])
        for split, p in probs.items():
            metrics[split]["log_loss_calibrated"] = log_loss(temper(p, temperature), labels[split])
        say(
            f"temperature {temperature:g} fitted on val: log loss "
            f"{metrics['val']['log_loss']:.4f} -> {metrics['val']['log_loss_calibrated']:.4f}"
        )
    else:
        notes.append("calibration turned off: no temperature fitted")
    val = (None, labels["val"]) if data.val is not None else None
    decision = decision_threshold(
        threshold[0], threshold[1], output_kind, probs, val, temperature, metrics, notes
    )
    if decision:
        say(f"decision threshold {decision[0]:.4f} ({decision[1]})")
    extra = calibration_meta(temperature, *(decision or (None, None)))
    if notes:
        extra["notes"] = notes
    return metrics, extra
