"""Train a registered model on a dataset folder and write a model bundle.

One public function, :func:`train`. It is plain: no click, no printing; progress goes
to the callbacks the caller passes (the ``train`` command turns them into stderr lines
and a progress bar).

How a run is made resumable: each epoch is one ``model.fit`` call over that epoch's
own permutation of the training set (drawn from ``(seed, epoch)``), and after it the
whole state is checkpointed under ``RUN/checkpoints/``: the model with its optimizer
(whose step counter drives the learning-rate schedule), the best weights so far, and
state.json (epoch, best loss, patience count, history). ``--resume`` loads them and
goes on at the next epoch exactly as an uninterrupted run would have.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from imgkit import __version__
from imgkit.bundle import (
    BUNDLE_META,
    CHECKPOINT_DIR,
    CURVES_FILE,
    HISTORY_FILE,
    MODEL_FILE,
    save_meta,
)
from imgkit.dataset import Dataset
from imgkit.errors import BadDatasetError, BadInputError, OutputExistsError
from imgkit.fileio import atomic_open, atomic_path, write_csv, write_text
from imgkit.models import create_model, get_spec, resolved_options

DEFAULT_EPOCHS = 15
DEFAULT_SEED = 0
DEFAULT_PATIENCE = 5
DEFAULT_RESIZE = "stretch"
RESIZE_MODES = ("stretch", "pad", "crop")

# Up to this many bytes of decoded train+val images are copied into memory and given
# to model.fit as numpy arrays (the fastest path); bigger sets stream from the
# memory-mapped cache through a keras.utils.PyDataset.
IN_MEMORY_LIMIT = 2 * 1024**3

STATE_FILE = "state.json"

# The settings a resumed run must share with the run it continues.
_RUN_ARGS = (
    "model",
    "epochs",
    "batch_size",
    "lr",
    "seed",
    "patience",
    "dropout",
    "resize",
    "input_size",
    "channels",
)


def train(
    dataset_dir: str | os.PathLike,
    output: str | os.PathLike,
    *,
    model: str | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int | None = None,
    patience: int | None = None,
    dropout: float | None = None,
    resize: str | None = None,
    input_size: tuple[int, int] | None = None,
    channels: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    callbacks_extra: list | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    on_batch: Callable[[int, int, int], None] | None = None,
    on_info: Callable[[str], None] | None = None,
) -> dict:
    """Train ``model`` on a dataset folder and write a complete bundle to ``output``.

    Adam on sparse categorical cross-entropy (binary for sigmoid models), the model's
    learning-rate schedule, early stopping on the validation loss (the training loss
    when there is no val split) that restores the best epoch's weights, and a
    checkpoint after every epoch.

    None for a setting means "the default", or on ``resume`` "as the run was started".

    Args:
        dataset_dir: a dataset folder made by ``imgkit prep`` (classification).
        output: the bundle folder to write.
        model: a registry name (see ``imgkit.models.list_models``); required unless
            resuming.
        epochs: most epochs to train (default 15).
        batch_size: images per step (default: the model's, 512 for the small CNNs).
        lr: peak learning rate (default: the model's).
        seed: seeds weights, shuffling and dropout (default 0).
        patience: stop after this many epochs without a better monitored loss; 0 never
            stops early (default 5). The best epoch's weights are kept either way.
        dropout: the model's dropout option (see the model's docstring); 0 removes it.
        resize: how images are fitted to the input size: stretch, pad or crop.
        input_size: (height, width) the images are resized to (default: the model's).
        channels: 1 (grayscale) or 3 (RGB) (default: the model's).
        resume: continue the interrupted run in ``output`` at its next epoch.
        overwrite: replace a bundle or an interrupted run already in ``output``.
        callbacks_extra: Keras callbacks given to each epoch's ``model.fit`` call
            (one call per epoch, so their train begin/end hooks run every epoch).
        on_epoch: called after each epoch's checkpoint with a dict: epoch (1-based),
            epochs, loss, accuracy, val_loss, val_accuracy (when there is a val
            split), lr, seconds, improved, best_epoch, stopping.
        on_batch: called after each training step with (epoch, step, steps).
        on_info: called with one-line messages worth showing.

    Returns:
        The bundle's imgkit.json content.

    Raises:
        BadDatasetError: not a classification dataset, fewer than 2 classes, no train split.
        BadInputError: unknown model, bad settings, or ``resume`` with another dataset,
            model or settings.
        OutputExistsError: ``output`` holds a bundle or an interrupted run and neither
            ``overwrite`` nor ``resume`` was given.
    """
    say = on_info or (lambda _msg: None)
    out = Path(output)
    ds = Dataset.load(dataset_dir)
    _check_dataset(ds)
    if resume and overwrite:
        raise BadInputError("--resume and --overwrite contradict each other; pass one")
    given = {
        "model": model,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "patience": patience,
        "dropout": dropout,
        "resize": resize,
        "input_size": list(input_size) if input_size is not None else None,
        "channels": channels,
    }
    state = _prepare_output(out, resume=resume, overwrite=overwrite)
    args = _resume_args(state, given, ds, out) if state is not None else _new_args(given)
    spec = get_spec(args["model"])
    size, channels = (int(args["input_size"][0]), int(args["input_size"][1])), int(args["channels"])

    # --- data ------------------------------------------------------------------------
    splits = ds.splits()
    train_x, train_y = _split_arrays(ds, "train", size, channels, args["resize"], say)
    if len(train_x) == 0:
        raise BadDatasetError(f"{ds.root}: the train split is empty")
    val = _split_arrays(ds, "val", size, channels, args["resize"], say) if "val" in splits else None
    nbytes = train_x.nbytes + (val[0].nbytes if val is not None else 0)
    in_memory = nbytes < IN_MEMORY_LIMIT
    if in_memory:
        # One copy into RAM: later epochs index it without touching the disk.
        train_x = np.asarray(train_x)
        if val is not None:
            val = (np.asarray(val[0]), val[1])
    monitor = "val_loss" if val is not None else "loss"
    if val is None and state is None:
        say("no val split: early stopping watches the training loss")
    polarity = detect_polarity(train_x, seed=args["seed"])
    if spec.output == "sigmoid":
        train_y = train_y.astype("float32").reshape(-1, 1)
        if val is not None:
            val = (val[0], val[1].astype("float32").reshape(-1, 1))

    # --- model -----------------------------------------------------------------------
    import keras

    # Seeding before building (or loading) gives every layer the same initial weights
    # and dropout seeds in a fresh run and in a resumed one.
    keras.utils.set_random_seed(args["seed"])
    ckpt = out / CHECKPOINT_DIR
    steps = math.ceil(len(train_x) / args["batch_size"])
    if state is None:
        net = create_model(
            args["model"], len(ds.classes), size, channels, **_options(spec, args["dropout"])
        )
        _compile(net, spec, args["lr"], args["epochs"] * steps)
        history: list[dict] = []
        best, best_epoch, wait, best_weights, done = None, 0, 0, None, 0
        stopped = False
    else:
        net = _load_checkpoint(ckpt / state["model_file"])
        _set_rng_state(net, state.get("rng", []))
        history = list(state["history"])
        best, best_epoch, wait = state["best"], state["best_epoch"], state["wait"]
        best_weights = _load_weights(ckpt / state["best_file"]) if state.get("best_file") else None
        done, stopped = state["epoch"], state["stopped"]
        say(f"resuming {out} after epoch {done} of {args['epochs']}")

    extra = list(callbacks_extra or [])
    base_state = {
        "imgkit_version": __version__,
        "args": args,
        "dataset": {"path": str(ds.root.resolve()), "hash": ds.hash, "classes": ds.classes},
    }
    for epoch in range(done, args["epochs"]):
        if stopped:
            break
        cbs = list(extra)
        if on_batch is not None:
            cbs.append(_batch_reporter(on_batch, epoch + 1, steps))
        lr_now = float(keras.ops.convert_to_numpy(net.optimizer.learning_rate))
        order = np.random.default_rng([args["seed"], epoch]).permutation(len(train_x))
        started = time.perf_counter()
        logs = _fit_epoch(
            net, train_x, train_y, val, order, epoch, args["batch_size"], in_memory, cbs
        )
        row = {
            "epoch": epoch + 1,
            **logs,
            "lr": lr_now,
            "seconds": round(time.perf_counter() - started, 3),
        }
        history.append(row)

        value = logs.get(monitor)
        improved = value is not None and math.isfinite(value) and (best is None or value < best)
        if improved:
            best, best_epoch, wait = float(value), epoch + 1, 0
            best_weights = net.get_weights()
        else:
            wait += 1
        stopped = args["patience"] > 0 and wait >= args["patience"]
        _save_checkpoint(
            ckpt,
            net,
            best_weights if improved else None,
            {
                **base_state,
                "epoch": epoch + 1,
                "best": best,
                "best_epoch": best_epoch,
                "wait": wait,
                "stopped": stopped,
                "history": history,
                "rng": _rng_state(net),
            },
        )
        if on_epoch is not None:
            on_epoch(
                {
                    **row,
                    "epochs": args["epochs"],
                    "improved": improved,
                    "best_epoch": best_epoch,
                    "stopping": stopped,
                }
            )

    if stopped:
        say(f"early stopping after epoch {len(history)}: no better {monitor} for {wait} epochs")
    if best_weights is not None:
        net.set_weights(best_weights)
        if best_epoch != len(history):
            say(f"kept the weights of epoch {best_epoch} (best {monitor} {best:.4f})")

    # --- evaluate and write the bundle -------------------------------------------------
    metrics = {}
    if val is not None:
        metrics["val"] = _evaluate(net, val[0], val[1], args["batch_size"], in_memory)
    if "test" in splits:
        test_x, test_y = _split_arrays(ds, "test", size, channels, args["resize"], say)
        if spec.output == "sigmoid":
            test_y = test_y.astype("float32").reshape(-1, 1)
        metrics["test"] = _evaluate(
            net, test_x, test_y, args["batch_size"], test_x.nbytes < IN_MEMORY_LIMIT
        )

    hist_df = pd.DataFrame(history)
    meta = {
        "task": "classification",
        "model": args["model"],
        "classes": ds.classes,
        "input_size": [size[0], size[1]],
        "channels": channels,
        "resize": args["resize"],
        "pixels": {**spec.pixels, "inside_model": True},
        "polarity": polarity,
        "output": spec.output,
        "train_args": {k: args[k] for k in (*_RUN_ARGS, "schedule")},
        "dataset": {
            "path": str(ds.root.resolve()),
            "hash": ds.hash,
            "counts": {s: int((ds.manifest["split"] == s).sum()) for s in splits},
        },
        "metrics": metrics,
        "monitor": monitor,
        "epochs_run": len(history),
        "best_epoch": best_epoch,
        "early_stopped": bool(stopped),
        "resumed": state is not None,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if monitor == "loss":
        meta["notes"] = ["no val split: early stopping watched the training loss"]

    with atomic_path(out / MODEL_FILE) as tmp:
        net.save(tmp)
    write_csv(hist_df, out / HISTORY_FILE)
    from imgkit.plots import plot_history

    plot_history(hist_df, out / CURVES_FILE, title=f"{args['model']} on {ds.root.name}")
    # imgkit.json last: its presence says the bundle is complete. The checkpoints only
    # served --resume, which a complete bundle refuses, so they go.
    saved = save_meta(out, meta)
    shutil.rmtree(ckpt, ignore_errors=True)
    return json.loads(saved.read_text(encoding="utf-8"))


# --- settings and the output folder ---------------------------------------------------


def _check_dataset(ds: Dataset) -> None:
    if ds.task != "classification":
        raise BadDatasetError(f"{ds.root}: a {ds.task} dataset; imgkit train needs classification")
    if len(ds.classes) < 2:
        raise BadDatasetError(
            f"{ds.root}: {len(ds.classes)} class(es) {ds.classes}; classification needs at least 2"
        )
    if "train" not in ds.splits():
        raise BadDatasetError(
            f"{ds.root}: no train split (splits here: {', '.join(ds.splits()) or 'none'})"
        )


def _prepare_output(out: Path, *, resume: bool, overwrite: bool) -> dict | None:
    """Check what ``out`` holds against the flags; return the saved state to resume."""
    complete = (out / BUNDLE_META).is_file()
    ckpt = out / CHECKPOINT_DIR
    state_path = ckpt / STATE_FILE
    if resume:
        if complete:
            raise OutputExistsError(
                f"{out}: the run there is complete; nothing to resume "
                "(pass --overwrite to train it again, or choose another -o)"
            )
        if not state_path.is_file():
            raise BadInputError(f"{out}: no checkpoint to resume from ({state_path} is missing)")
        try:
            return json.loads(state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise BadInputError(f"{state_path}: cannot read the checkpoint state ({e})") from e
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out}: exists and is not a folder")
    if complete and not overwrite:
        raise OutputExistsError(
            f"{out}: already holds a trained model bundle; pass --overwrite to train it again, "
            "or choose another -o"
        )
    if not complete and ckpt.is_dir() and not overwrite:
        raise OutputExistsError(
            f"{out}: holds an interrupted run (checkpoints but no {BUNDLE_META}); "
            "--resume continues it, --overwrite starts again"
        )
    if not complete and not ckpt.is_dir() and out.is_dir() and any(out.iterdir()):
        raise OutputExistsError(
            f"{out}: exists and is not a model bundle; choose a new or empty folder"
        )
    if overwrite:
        # imgkit.json first, so a crash part-way never leaves something that looks complete.
        for name in (BUNDLE_META, MODEL_FILE, HISTORY_FILE, CURVES_FILE):
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(ckpt, ignore_errors=True)
    return None


def _new_args(given: dict) -> dict:
    if not given["model"]:
        raise BadInputError("no model given (--model NAME; see --list-models)")
    spec = get_spec(given["model"])
    if spec.task != "classification":
        raise BadInputError(f"model {spec.name!r} is for {spec.task}, not classification")
    args = {
        "model": spec.name,
        "epochs": DEFAULT_EPOCHS if given["epochs"] is None else int(given["epochs"]),
        "batch_size": spec.batch_size if given["batch_size"] is None else int(given["batch_size"]),
        "lr": spec.lr if given["lr"] is None else float(given["lr"]),
        "seed": DEFAULT_SEED if given["seed"] is None else int(given["seed"]),
        "patience": DEFAULT_PATIENCE if given["patience"] is None else int(given["patience"]),
        "dropout": resolved_options(spec.name, dropout=given["dropout"]).get("dropout"),
        "resize": given["resize"] or DEFAULT_RESIZE,
        "schedule": spec.schedule,
        "input_size": [int(v) for v in (given["input_size"] or spec.input_size)],
        "channels": spec.channels if given["channels"] is None else int(given["channels"]),
    }
    if len(args["input_size"]) != 2 or min(args["input_size"]) < 1:
        raise BadInputError(f"input size must be (height, width), got {args['input_size']}")
    if args["channels"] not in (1, 3):
        raise BadInputError(f"--channels must be 1 or 3, got {args['channels']}")
    if args["epochs"] < 1:
        raise BadInputError(f"--epochs must be at least 1, got {args['epochs']}")
    if args["batch_size"] < 1:
        raise BadInputError(f"--batch-size must be at least 1, got {args['batch_size']}")
    if not args["lr"] > 0:
        raise BadInputError(f"--lr must be positive, got {args['lr']}")
    if args["patience"] < 0:
        raise BadInputError(f"--patience must be 0 or more, got {args['patience']}")
    if given["dropout"] is not None and "dropout" not in spec.options:
        raise BadInputError(f"model {spec.name!r} has no dropout option")
    if args["resize"] not in RESIZE_MODES:
        raise BadInputError(
            f"--resize must be one of {', '.join(RESIZE_MODES)}, got {args['resize']!r}"
        )
    return args


def _resume_args(state: dict, given: dict, ds: Dataset, out: Path) -> dict:
    args = dict(state["args"])
    saved = state.get("dataset", {})
    if saved.get("hash") != ds.hash or saved.get("classes") != ds.classes:
        raise BadInputError(
            f"--resume: {ds.root} is not the dataset the run in {out} was started on "
            f"(that was {saved.get('path')}, hash {saved.get('hash')}; this one has hash {ds.hash})"
        )
    for key in _RUN_ARGS:
        if given[key] is not None and given[key] != args[key]:
            flag = "--size" if key == "input_size" else "--" + key.replace("_", "-")
            raise BadInputError(
                f"--resume continues the run as it was started: it used {flag} {args[key]}, "
                f"not {given[key]} (use --overwrite to start again with new settings)"
            )
    return args


def _options(spec, dropout: float | None) -> dict:
    return {"dropout": dropout} if "dropout" in spec.options else {}


# --- Keras plumbing --------------------------------------------------------------------


def _compile(net, spec, lr: float, total_steps: int) -> None:
    import keras

    if spec.schedule == "cosine":
        # Keyed on the optimizer's step counter, which the checkpoint saves, so a
        # resumed run continues the same curve.
        rate = keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(1, total_steps))
    else:
        rate = lr
    if spec.output == "sigmoid":
        loss = keras.losses.BinaryCrossentropy()
        metric = keras.metrics.BinaryAccuracy(name="accuracy")
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
        metric = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    net.compile(optimizer=keras.optimizers.Adam(learning_rate=rate), loss=loss, metrics=[metric])


def _fit_epoch(net, x, y, val, order, epoch, batch_size, in_memory, callbacks) -> dict:
    """Train one epoch over ``x[order]``; return its logs as floats."""
    if in_memory:
        fit_x, fit_y, kwargs = x[order], y[order], {"batch_size": batch_size}
        validation = val
    else:
        fit_x, fit_y, kwargs = _batches(x, y, batch_size, order), None, {}
        validation = _batches(val[0], val[1], batch_size) if val is not None else None
    result = net.fit(
        fit_x,
        fit_y,
        epochs=epoch + 1,
        initial_epoch=epoch,
        shuffle=False,  # the order is ours: a function of (seed, epoch), so resumable
        validation_data=validation,
        verbose=0,  # Keras prints to stdout, which carries data only
        callbacks=callbacks,
        **kwargs,
    )
    return {k: float(v[-1]) for k, v in result.history.items()}


def _evaluate(net, x, y, batch_size: int, in_memory: bool) -> dict:
    if in_memory:
        result = net.evaluate(np.asarray(x), y, batch_size=batch_size, verbose=0, return_dict=True)
    else:
        result = net.evaluate(_batches(x, y, batch_size), verbose=0, return_dict=True)
    return {k: float(v) for k, v in result.items()}


def _batches(x, y, batch_size: int, order: np.ndarray | None = None):
    """A keras.utils.PyDataset over (memory-mapped) arrays, in ``order``."""
    import keras

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.order = np.arange(len(x)) if order is None else order

        def __len__(self):
            return math.ceil(len(self.order) / batch_size)

        def __getitem__(self, i):
            # Sorted indices read the memory map front to back within a batch.
            idx = np.sort(self.order[i * batch_size : (i + 1) * batch_size])
            return np.asarray(x[idx]), y[idx]

    return Batches()


def _batch_reporter(on_batch: Callable[[int, int, int], None], epoch: int, steps: int):
    """A Keras callback passing (epoch, step, steps) to ``on_batch`` after each step."""
    import keras

    class Reporter(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            on_batch(epoch, batch + 1, steps)

    return Reporter()


def _save_checkpoint(ckpt: Path, net, best_weights: list | None, state: dict) -> None:
    """Write this epoch's checkpoint; state.json (last) names the files that belong to it.

    Files are named by epoch and only removed once a newer state.json points past them,
    so an interruption at any moment leaves a consistent checkpoint.
    """
    ckpt.mkdir(parents=True, exist_ok=True)
    epoch = state["epoch"]
    previous = _read_state(ckpt)
    model_file = f"epoch-{epoch:03d}.keras"
    with atomic_path(ckpt / model_file) as tmp:
        net.save(tmp)
    if best_weights is not None:
        best_file = f"best-{epoch:03d}.npz"
        with atomic_open(ckpt / best_file, "wb") as f:
            np.savez(f, *best_weights)
    else:
        best_file = previous.get("best_file") if previous else None
    state = {**state, "model_file": model_file, "best_file": best_file}
    write_text(ckpt / STATE_FILE, json.dumps(state, indent=1) + "\n")
    keep = {model_file, best_file, STATE_FILE}
    for f in ckpt.iterdir():
        if f.name not in keep and (
            f.name.startswith(("epoch-", "best-")) or f.name.startswith(".")
        ):
            f.unlink(missing_ok=True)


def _rng_vars(net) -> list:
    # Dropout's random stream lives in SeedGenerator variables, which model.save does
    # not keep; the checkpoint keeps them so a resumed run draws the same masks.
    return [v for v in net.variables if v.path.endswith("seed_generator_state")]


def _rng_state(net) -> list:
    import keras

    return [keras.ops.convert_to_numpy(v.value).tolist() for v in _rng_vars(net)]


def _set_rng_state(net, values: list) -> None:
    variables = _rng_vars(net)
    if len(variables) == len(values):
        for v, value in zip(variables, values, strict=True):
            v.assign(np.asarray(value, dtype=v.dtype))


def _read_state(ckpt: Path) -> dict | None:
    try:
        return json.loads((ckpt / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _load_checkpoint(path: Path):
    import keras

    if not path.is_file():
        raise BadInputError(
            f"{path}: the checkpoint model is missing; cannot resume (use --overwrite)"
        )
    return keras.saving.load_model(path, safe_mode=True)


def _load_weights(path: Path) -> list:
    with np.load(path) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


def _split_arrays(ds: Dataset, split: str, size, channels: int, resize: str, say):
    if not ds.cache_file(split, size, channels, resize).is_file():
        n = len(ds.rows(split))
        say(
            f"decoding {n} {split} images to {size[0]}x{size[1]}x{channels} "
            "(once; cached in the dataset)"
        )
    return ds.arrays(split, size, channels, resize), ds.labels(split)


# --- background polarity ---------------------------------------------------------------


def detect_polarity(
    images: np.ndarray, sample: int = 1000, seed: int = 0, margin: float = 4.0
) -> str | None:
    """Say whether the images' background is darker or lighter than their content.

    Compares, per image, the mean brightness of a border ring (10% of the side) with
    the mean of the whole image, over a sample of images. Fashion-MNIST (light clothes
    on black) is "dark"; product photos on white are "light". Predict uses this to
    notice user images of the opposite polarity.

    Args:
        images: uint8 (n, h, w, c).
        sample: most images looked at.
        seed: which images are sampled.
        margin: grey levels (0-255) of difference below which an image is unclear.

    Returns:
        "dark" or "light" when at least 80% of the sample agrees, else None.
    """
    n = len(images)
    if n == 0 or images.shape[1] < 3 or images.shape[2] < 3:
        return None
    idx = np.sort(np.random.default_rng(seed).choice(n, size=min(n, sample), replace=False))
    gray = np.asarray(images[idx], dtype=np.float32).mean(axis=-1)
    h, w = gray.shape[1:]
    b = max(1, round(min(h, w) * 0.1))
    ring = np.ones((h, w), dtype=bool)
    ring[b : h - b, b : w - b] = False
    diff = gray[:, ring].mean(axis=1) - gray.reshape(len(gray), -1).mean(axis=1)
    if (diff < -margin).mean() >= 0.8:
        return "dark"
    if (diff > margin).mean() >= 0.8:
        return "light"
    return None
