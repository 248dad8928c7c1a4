"""Benchmark: the cost of a fashion-cnn training epoch, against the network it replaced.

Four runs, the same optimizer and images, timed by ``model.fit`` over the same
in-memory arrays (speed does not depend on what the pixels show, so random ones do
when Fashion-MNIST is absent), each at its own batch size:

- baseline: the earlier default, one conv a block (32, 64, 128), each
  Conv -> BatchNorm -> ReLU -> MaxPool, at its batch of 512;
- pool first: the same convs, each block's MaxPool moved before its BatchNorm and ReLU;
- fashion-cnn at batch 512: today's network (32 | 64+64 | 128, pool first) at the
  earlier batch;
- fashion-cnn: today's default, network and batch (128) from the registry.

The runs are interleaved (baseline, pool first, default, then again) and each figure
is the median, because this machine's speed drifts by 2x over minutes. The last
column scales to a full Fashion-MNIST epoch (54,000 images).

The bar: today's default epoch costs no more than the baseline's, within this
machine's noise (at most 1.10x); exit 1 when it misses.

Usage: python benchmarks/bench_fashion_cnn.py [--images 10240] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
from _table import print_table

FULL_EPOCH = 54_000
BAR = 1.10  # fashion-cnn (default)'s epoch over the baseline's, at most


def one_conv_blocks(pool_first: bool):
    """The earlier fashion-cnn's layers (one conv a block), pooled after or before BN."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=(28, 28, 1))
    x = layers.Rescaling(1 / 255)(inputs)
    for filters in (32, 64, 128):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        if pool_first:
            x = layers.MaxPooling2D()(x)
        x = layers.BatchNormalization(momentum=0.9)(x)
        x = layers.ReLU()(x)
        if not pool_first:
            x = layers.MaxPooling2D()(x)
    x = layers.Dropout(0.3)(layers.Flatten()(x))
    x = layers.Dropout(0.4)(layers.Dense(256, activation="relu")(x))
    return keras.Model(inputs, layers.Dense(10, activation="softmax")(x))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_240)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import keras

    from imgkit.models import create_model, get_spec

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(args.images, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, size=args.images)
    default_batch = get_spec("fashion-cnn").batch_size
    # name -> (network, batch size); the two fashion-cnn rows are separate models so
    # that each keeps its own compiled step.
    nets = {
        "baseline (earlier default)": (one_conv_blocks(pool_first=False), 512),
        "pool first, one conv a block": (one_conv_blocks(pool_first=True), 512),
        "fashion-cnn, batch 512": (create_model("fashion-cnn", 10), 512),
        "fashion-cnn (default)": (create_model("fashion-cnn", 10), default_batch),
    }
    times: dict[str, list[float]] = {name: [] for name in nets}
    for net, batch in nets.values():
        net.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
        net.fit(x[: batch * 2], y[: batch * 2], batch_size=batch, verbose=0)
    for _ in range(args.repeat):
        for name, (net, batch) in nets.items():
            t0 = time.perf_counter()
            net.fit(x, y, batch_size=batch, epochs=1, verbose=0)
            times[name].append(time.perf_counter() - t0)

    base = statistics.median(times["baseline (earlier default)"])
    rows = []
    for name, (net, batch) in nets.items():
        t = statistics.median(times[name])
        full = t * FULL_EPOCH / args.images
        params = f"{net.count_params():,}"
        rows.append((name, params, batch, f"{t:.2f} s", f"{t / base:.2f}x", f"{full:.0f} s"))
    print(f"{args.images} images of 28x28x1, median of {args.repeat}")
    print_table(rows, ("network", "params", "batch", "epoch", "vs baseline", "per 54,000"))
    ratio = statistics.median(times["fashion-cnn (default)"]) / base
    print(f"fashion-cnn (default) against the baseline: {ratio:.2f}x (bar: at most {BAR:.2f}x)")
    if ratio > BAR:
        print(f"MISSED: fashion-cnn's epoch costs {ratio:.2f}x the baseline's", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
