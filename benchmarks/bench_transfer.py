"""Benchmark: transfer learning with mobilenetv2, against baselines measured in the same run.

(a) ``imgkit train`` steps/s against a bare ``model.fit`` of the same model (same
    builder, augmentation, loss, schedule, batch size) on the same decoded arrays;
    the bar is at most +3% per epoch, checkpoints and the resumable shuffle included.
(b) a head epoch on cached backbone features against an epoch through the frozen
    backbone (``--fine-tune-last 0 --augment none``, with and without the cache).
(c) the decode cache: ``Dataset.arrays`` the first time (decoding every PNG) against
    the second (mapping the cache file), i.e. epoch 1's input against epoch 2's.

Data: random 96x96 crops of scikit-image's sample photos (two classes: crops of the
cat photo against crops of the others) written as PNG files, or synthetic images when
scikit-image is missing. Weights: the ImageNet file from ../shared/weights when
present, else random (the timings do not depend on the values).

Usage: python benchmarks/bench_transfer.py [--train 960] [--epochs 4] [--size 96]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _table import print_table
from PIL import Image

BAR_PERCENT = 3.0
SHARED_FILE = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "weights"
    / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
)


def _photos() -> tuple[list[np.ndarray], list[np.ndarray], str]:
    try:
        from skimage import data
    except ImportError:
        rng = np.random.default_rng(0)
        cats = [rng.integers(0, 255, (300, 300, 3), dtype=np.uint8)]
        others = [rng.integers(0, 128, (300, 300, 3), dtype=np.uint8)]
        return cats, others, "synthetic noise images"
    cats = [data.chelsea(), data.cat()]
    others = [data.astronaut(), data.coffee(), data.rocket(), data.immunohistochemistry()]
    return cats, others, "scikit-image photo crops"


def make_dataset(folder: Path, n_train: int, n_val: int, size: int) -> str:
    """Write PNG crops and a dataset folder (no cache yet) for them."""
    from imgkit.data.dataset_write import write_dataset
    from imgkit.data.records import Record

    cats, others, source = _photos()
    rng = np.random.default_rng(0)
    records = []
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            label = i % 2
            pool = cats if label == 0 else others
            photo = pool[rng.integers(len(pool))]
            side = int(rng.integers(size, min(photo.shape[:2]) + 1))
            top = int(rng.integers(0, photo.shape[0] - side + 1))
            left = int(rng.integers(0, photo.shape[1] - side + 1))
            crop = Image.fromarray(photo[top : top + side, left : left + side]).convert("RGB")
            rel = f"images/{split}/{i:05d}.png"
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            crop.save(folder / rel)
            records.append(Record(path=rel, label=("cat", "other")[label], split=split))
    write_dataset(folder, records, [], task="classification", seed=0)
    return source


def bench_cache(data: Path, size: int) -> tuple[float, float]:
    from imgkit.data.dataset import Dataset

    ds = Dataset.load(data)
    t0 = time.perf_counter()
    first = np.asarray(ds.arrays("train", (size, size), 3))
    t1 = time.perf_counter()
    second = np.asarray(Dataset.load(data).arrays("train", (size, size), 3))
    t2 = time.perf_counter()
    assert np.array_equal(first, second)
    ds.arrays("val", (size, size), 3)
    return t1 - t0, t2 - t1


def bare_fit(data: Path, size: int, epochs: int, weights: str, batch: int) -> list[float]:
    """The baseline: the same model and recipe, fitted straight on in-memory arrays."""
    import keras

    from imgkit.data.dataset import Dataset
    from imgkit.models import create_model, get_spec
    from imgkit.train.augment import with_augmentation
    from imgkit.train.recipe import compile_model, targets

    spec = get_spec("mobilenetv2").recipe  # the training defaults
    ds = Dataset.load(data)
    x = np.asarray(ds.arrays("train", (size, size), 3))
    y = targets(ds.labels("train"), "sigmoid", 2, spec.label_smoothing)
    xv = np.asarray(ds.arrays("val", (size, size), 3))
    yv = targets(ds.labels("val"), "sigmoid", 2, spec.label_smoothing)
    times: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter())

    keras.utils.set_random_seed(0)
    net = with_augmentation(
        create_model("mobilenetv2", 2, (size, size), 3, weights=weights), spec.augment, 0
    )
    steps = -(-len(x) // batch)
    compile_model(net, "sigmoid", spec.lr, spec.schedule, steps * epochs, spec.label_smoothing)
    net.fit(
        x,
        y,
        batch_size=batch,
        epochs=epochs,
        validation_data=(xv, yv),
        verbose=0,
        callbacks=[Timer()],
    )
    return times


def imgkit_train(data: Path, out: Path, size: int, epochs: int, weights: str, **kw) -> tuple:
    from imgkit.train.trainer import train

    times: list[float] = []
    t0 = time.perf_counter()
    train(
        data,
        out,
        model="mobilenetv2",
        input_size=(size, size),
        epochs=epochs,
        weights=weights,
        patience=0,
        # After the epoch's checkpoint: the time between two reports is everything an
        # epoch costs (training, validation, checkpoint, callbacks).
        on_epoch=lambda row: times.append(time.perf_counter()),
        **kw,
    )
    return times, time.perf_counter() - t0


def steady(stamps: list[float]) -> float:
    """Median epoch time from end-of-epoch timestamps; epoch 1 (tracing) is left out."""
    return statistics.median(b - a for a, b in zip(stamps[:-1], stamps[1:], strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=960, help="training images")
    parser.add_argument("--val", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    weights = str(SHARED_FILE) if SHARED_FILE.is_file() else "none"
    steps = -(-args.train // args.batch)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        source = make_dataset(data, args.train, args.val, args.size)
        decode_s, mapped_s = bench_cache(data, args.size)

        bare = bare_fit(data, args.size, args.epochs, weights, args.batch)
        ours, _ = imgkit_train(data, tmp / "a", args.size, args.epochs, weights)
        frozen, frozen_total = imgkit_train(
            data, tmp / "b", args.size, args.epochs, weights,
            fine_tune_last=0, augment="none", cache_features=False,
        )  # fmt: skip
        cached, cached_total = imgkit_train(
            data, tmp / "c", args.size, args.epochs, weights, fine_tune_last=0, augment="none"
        )

    bare_ep, ours_ep = steady(bare), steady(ours)
    frozen_ep, cached_ep = steady(frozen), steady(cached)
    overhead = 100 * (ours_ep / bare_ep - 1)
    print(
        f"mobilenetv2 at {args.size}px, {source}, {args.train} train / {args.val} val images, "
        f"batch {args.batch}, {args.epochs} epochs, weights "
        f"{'shared ImageNet file' if weights != 'none' else 'random'}"
    )
    print_table(
        [
            (
                "(a) train, fine-tune last 30, standard augment",
                f"bare model.fit: {steps / bare_ep:.2f} steps/s",
                f"imgkit train: {steps / ours_ep:.2f} steps/s",
                f"{ours_ep / bare_ep:.2f}x time ({100 * (ours_ep / bare_ep - 1):+.1f}%)",
            ),
            (
                "(b) epoch, frozen backbone, no augment",
                f"through the backbone: {frozen_ep:.3f} s",
                f"head on cached features: {cached_ep:.3f} s",
                f"{frozen_ep / cached_ep:.1f}x faster",
            ),
            (
                "(b') whole run incl. tracing, evaluation",
                f"through the backbone: {frozen_total:.1f} s",
                f"cached features: {cached_total:.1f} s",
                f"{frozen_total / cached_total:.2f}x faster",
            ),
            (
                "(c) input of the train split",
                f"1st Dataset.arrays (decode): {decode_s:.3f} s",
                f"2nd (memory map): {mapped_s:.4f} s",
                f"{decode_s / max(mapped_s, 1e-9):.0f}x faster",
            ),
        ],
        ("measurement", "baseline", "imgkit", "ratio"),
    )
    print(
        f"(a) overhead per epoch: {overhead:+.1f}% (bar: at most +{BAR_PERCENT:g}%), "
        f"{ours_ep - bare_ep:+.2f} s per epoch (one fit per run; a checkpoint every epoch)"
    )
    if overhead > BAR_PERCENT:
        raise SystemExit(f"(a) missed the bar: {overhead:+.1f}% > +{BAR_PERCENT:g}%")


if __name__ == "__main__":
    main()
