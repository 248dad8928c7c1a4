"""The training loop: one ``model.fit`` per run, a checkpoint after every epoch.

:func:`fit_run` builds the model (or loads it from the checkpoint on ``--resume``),
compiles it with the run's recipe and calls ``fit`` once over
:func:`imgkit.train.epochs.epoch_batches`. :class:`RunCallback` does, at each epoch's
end, what the run needs: early stopping on the monitored loss with the best weights
kept, the checkpoint (:mod:`imgkit.train.checkpoints`), the history row and the caller's
progress report. Resuming reloads the weights, the optimizer (its step counter drives
the learning-rate schedule) and the random streams, and fits from the next epoch: the
batches depend on (seed, epoch) only, so the result equals an uninterrupted run's.

Transfer learning with a frozen backbone and no augmentation trains only the head, on
the backbone's pooled features computed once: the same result as running every epoch
through the frozen backbone, many times faster. The full model goes in the bundle.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgkit import __version__
from imgkit.train import checkpoints as ck
from imgkit.train.epochs import batch_bounds, epoch_batches, in_order
from imgkit.train.settings import RunSettings


@dataclass
class FitData:
    """What the loop trains on: images, targets, optional weights, optional val split."""

    x: object
    y: np.ndarray
    weights: np.ndarray | None = None
    val: tuple | None = None  # (images, targets)
    in_memory: bool = True
    monitor: str = "val_loss"


@dataclass
class FitResult:
    """The trained model and how the run went."""

    net: object  # the full model, best weights
    trainer: object  # what was fitted: the head alone in a features run, else net
    features_mode: bool
    history: list = field(default_factory=list)
    best_epoch: int = 0
    stopped: bool = False
    head_first: dict | None = None  # the head-only phase, when the run had one


@dataclass
class Reporting:
    """Where the loop reports: per epoch, per step, one-line notes; extra Keras callbacks."""

    on_epoch: Callable[[dict], None] | None = None
    on_batch: Callable[[int, int, int], None] | None = None
    say: Callable[[str], None] = lambda _msg: None
    callbacks: list = field(default_factory=list)


def fit_run(
    out: Path,
    settings: RunSettings,
    state: ck.RunState | None,
    data: FitData,
    compile_fn: Callable,
    dataset_state: dict,
    report: Reporting,
    num_classes: int,
    cache_features: bool | None = None,
    segmentation: bool = False,
    source=None,
    multilabel: bool = False,
) -> FitResult:
    """Build or resume the model, fit it once over all remaining epochs, keep the best.

    Args:
        out: the run folder (its ``checkpoints/`` are written here).
        settings: the run's settings.
        state: the checkpoint state to resume from, or None for a new run.
        data: the training data.
        compile_fn: ``fn(model, steps_per_epoch)`` compiling the model to fit.
        dataset_state: what state.json records about the dataset (path, hash, classes).
        report: progress callbacks.
        num_classes: classes (the builder's output width).
        cache_features: False never trains on cached features (see the module doc).
        segmentation: image and mask are mirrored together instead of augmentation layers.
        source: the :class:`~imgkit.bundle.Bundle` whose model the run trains further
            (:mod:`imgkit.models.bundled`), or None to build the registry's model.
        multilabel: build the model with one sigmoid unit per class (a ``source``'s
            last Dense layer becomes one unless the bundle is multi-label on these labels).
    """
    import keras

    # Seeding before building (or loading) gives every layer the same initial weights
    # and dropout seeds in a fresh run and in a resumed one.
    keras.utils.set_random_seed(settings.seed)
    ckpt = out / ck.CHECKPOINT_DIR
    head_first = None
    if state is None and source is not None:
        net = trainer = _from_bundle(
            source, dataset_state["classes"], settings, report.say, multilabel
        )
        features_mode = False
    elif state is None:
        net, trainer, features_mode = _build(
            settings, num_classes, cache_features, segmentation, multilabel
        )
        # Only when backbone layers will train: with the backbone frozen, the run itself
        # trains the head alone (on cached features when nothing is augmented).
        if settings.head_epochs and settings.fine_tune_last and not (features_mode or segmentation):
            from imgkit.train.head_first import train_head_first

            base = _unaugmented(net)
            if base is not None:  # a model with a features layer to split at
                head_first = train_head_first(base, data, settings, compile_fn, report.say)
    if state is None:
        compile_fn(trainer, len(batch_bounds(len(data.x), settings.batch_size)))
        run = ck.Progress()
        best_weights = None
    else:
        net, trainer, features_mode, run, best_weights = _resume(ckpt, state, source)
        report.say(f"resuming {out} after epoch {run.epoch} of {settings.epochs}")

    base_state = ck.RunState(
        imgkit_version=__version__,
        args=settings.to_dict(),
        dataset=dataset_state,
        features=features_mode,
        progress=run,
    )
    callback = RunCallback(
        ckpt, settings, run, best_weights, report, features_mode, net, data.monitor, base_state
    )
    if not run.stopped and run.epoch < settings.epochs:
        fit_x, fit_val = _inputs(net, data, features_mode, settings.batch_size, report.say)
        batches = epoch_batches(
            fit_x, data.y, settings.batch_size, settings.seed, run.epoch, data.weights,
            flip_pairs=_pair_flips(settings) if segmentation else False,
        )  # fmt: skip
        try:
            trainer.fit(
                batches,
                epochs=settings.epochs,
                initial_epoch=run.epoch,
                shuffle=False,  # the order is ours: a function of (seed, epoch)
                steps_per_epoch=batches.steps,
                validation_data=fit_val,
                verbose=0,  # Keras prints to stdout, which carries data only
                # The caller's callbacks first: what they do to an epoch's logs is what the
                # run sees (and records).
                callbacks=[*report.callbacks, *_batch_reporter(report), callback],
            )
        finally:
            # Interrupted or not, the last finished epoch's checkpoint is on disk
            # before anything else happens.
            callback.writer.wait()
    result = callback.finish(trainer)
    result.head_first = head_first
    return result


def _resume(ckpt: Path, state: ck.RunState, source):
    """A run's model, trainer, features mode, progress and best weights, as its last
    checkpoint left them (the RNG state too)."""
    features_mode = state.features
    trainer = ck.load_trainer(ckpt, state, trust=source is not None and source.trust)
    net = ck.load_checkpoint(ckpt / ck.FROZEN_FILE) if features_mode else trainer
    ck.set_rng_state(trainer, state.rng)
    best_weights = ck.load_weights(ckpt / state.best_file) if state.best_file else None
    return net, trainer, features_mode, state.progress.copy(), best_weights


def _pair_flips(settings: RunSettings):
    """Segmentation's augmentation: none, mirrors (flip, shift, light) or the square's
    symmetries (standard)."""
    if settings.augment == "none":
        return False
    square = settings.input_size[0] == settings.input_size[1]
    return "dihedral" if settings.augment == "standard" and square else True


def _unaugmented(net):
    """The model with a ``features`` layer in ``net`` (``net`` itself, or the model inside
    its augmentation wrapper), or None."""
    from imgkit.models.backbones import has_features

    if has_features(net):
        return net
    inner = (layer for layer in net.layers if hasattr(layer, "layers") and has_features(layer))
    return next(inner, None)


def _build(settings: RunSettings, num_classes: int, cache_features, segmentation: bool,
           multilabel: bool = False):  # fmt: skip
    from imgkit.models import create_model
    from imgkit.models.backbones import has_features, head_model
    from imgkit.train.augment import with_augmentation

    base = create_model(
        settings.model, num_classes, settings.input_size, settings.channels,
        multilabel=multilabel, **settings.builder_options(),
    )  # fmt: skip
    net = base if segmentation else with_augmentation(base, settings.augment, settings.seed)
    features_mode = (
        cache_features is not False
        and settings.augment == "none"
        and settings.fine_tune_last == 0
        and has_features(net)
    )
    return net, head_model(net) if features_mode else net, features_mode


def _from_bundle(source, classes: list[str], settings: RunSettings, say, multilabel: bool):
    from imgkit.models.bundled import start_model
    from imgkit.train.augment import with_augmentation

    task = "multilabel" if multilabel else "classification"
    base, replaced = start_model(source, classes, task)
    if replaced:
        n = len(classes)
        new = f"{n} labels (a sigmoid unit each)" if multilabel else f"{n} classes"
        if source.meta["task"] != task:
            why = "a single-label bundle" if multilabel else "a multi-label bundle"
            say(f"{source.path}: {why}: its last Dense layer is replaced by a new one for {new}")
        else:
            say(
                f"{source.path}: its classes ({', '.join(source.classes)}) are not the data's: "
                f"its last Dense layer is replaced by a new one for {new}"
            )
    return with_augmentation(base, settings.augment, settings.seed)


def _inputs(net, data: FitData, features_mode: bool, batch_size: int, say):
    """The training images and val data fit takes: pooled features in a features run."""
    val = data.val
    if not features_mode:
        if val is not None and not data.in_memory:
            return data.x, in_order(val[0], val[1], batch_size)
        return data.x, val
    from imgkit.train.scoring import cached_features

    say("backbone frozen and no augmentation: computing its features once, training the head")
    return cached_features(net, data.x, val, batch_size)


def _batch_reporter(report: Reporting) -> list:
    """A callback passing (epoch, step, steps) to ``report.on_batch``, when it is set.

    Only then: a callback with a batch hook makes Keras wait for every step to finish
    before starting the next (measured: +30% per MobileNetV2 epoch on 2 CPU cores).
    This one reads nothing from the model, so it declares itself safe to run
    asynchronously, and Keras keeps dispatching ahead.
    """
    if report.on_batch is None:
        return []

    class BatchReporter(_keras_callback_base()):
        async_safe = True

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            report.on_batch(self.epoch + 1, batch + 1, self.params.get("steps") or 0)

    return [BatchReporter()]


def _keras_callback_base():
    import keras

    return keras.callbacks.Callback


class RunCallback(_keras_callback_base()):
    """Early stopping, best weights, checkpoints, history and progress, epoch by epoch."""

    def __init__(self, ckpt, settings, run, best_weights, report, features_mode, net, monitor,
                 base_state):  # fmt: skip
        super().__init__()
        self.ckpt, self.settings, self.run, self.report = ckpt, settings, run, report
        self.best_weights, self.features_mode, self.net = best_weights, features_mode, net
        self.monitor, self.base_state = monitor, base_state
        self.epoch, self.lr, self.started = 0, 0.0, 0.0
        self.writer = ck.CheckpointWriter()

    def on_epoch_begin(self, epoch, logs=None):
        import keras

        self.epoch = epoch
        self.lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        run, logs = self.run, {k: float(v) for k, v in (logs or {}).items()}
        row = {"epoch": epoch + 1, **logs, "lr": self.lr,
               "seconds": round(time.perf_counter() - self.started, 3)}  # fmt: skip
        run.history.append(row)
        value = logs.get(self.monitor)
        finite = value is not None and math.isfinite(value)
        improved = finite and (run.best is None or value < run.best)
        # Within the model's near_best of the lowest: not an improvement (patience goes
        # on counting), but these weights are kept, as the later of two tied epochs.
        near = (
            finite
            and not improved
            and self.settings.near_best > 0
            and run.best is not None
            and value <= run.best * (1 + self.settings.near_best)
        )
        if improved:
            run.best, run.wait = float(value), 0
        else:
            run.wait += 1
        if improved or near:
            run.best_epoch = epoch + 1
            self.best_weights = self.model.get_weights()
        patience = self.settings.patience
        run.stopped = patience > 0 and run.wait >= patience
        run.epoch = epoch + 1
        self._checkpoint(improved or near)
        if self.report.on_epoch is not None:
            self.report.on_epoch(
                {
                    **row,
                    "epochs": self.settings.epochs,
                    "improved": improved,
                    "best_epoch": run.best_epoch,
                    "stopping": run.stopped,
                }
            )
        if run.stopped:
            self.model.stop_training = True

    def _checkpoint(self, improved: bool) -> None:
        from imgkit.fileio import atomic_path

        if self.features_mode and not (self.ckpt / ck.FROZEN_FILE).is_file():
            self.ckpt.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.ckpt / ck.FROZEN_FILE) as tmp:
                self.net.save(tmp)
        # A copy: the file is written in the background while the next epoch trains.
        state = dataclasses.replace(
            self.base_state, progress=self.run.copy(), rng=ck.rng_state(self.model)
        )
        self.writer.save(self.ckpt, self.model, self.best_weights if improved else None, state)

    def finish(self, trainer) -> FitResult:
        """Put the best weights back (onto the full model in a features run)."""
        from imgkit.models.backbones import head_model

        self.writer.wait()
        run, say = self.run, self.report.say
        if run.stopped:
            say(
                f"early stopping after epoch {len(run.history)}: "
                f"no better {self.monitor} for {run.wait} epochs"
            )
        if self.best_weights is not None:
            trainer.set_weights(self.best_weights)
            kept, best = run.best_epoch, f"best {self.monitor} {run.best:.4f}"
            value = run.history[kept - 1].get(self.monitor) if kept else None
            if value is not None and value != run.best:
                say(
                    f"kept the weights of epoch {kept}, the latest within "
                    f"{self.settings.near_best:.0%} of the {best} ({value:.4f})"
                )
            elif kept != len(run.history):
                say(f"kept the weights of epoch {kept} ({best})")
        if self.features_mode:
            # The trained head goes onto the full model (a resumed head is its own copy).
            head_model(self.net).set_weights(trainer.get_weights())
        return FitResult(self.net, trainer, self.features_mode, run.history,
                         run.best_epoch, bool(run.stopped))  # fmt: skip
