"""Benchmark: ``imgkit predict`` on a folder of JPEGs against the seed's per-image loop.

The seed notebook opened each image, converted and resized it, and called
``model.predict`` on it alone. imgkit decodes in threads (JPEG draft mode for big
photos), batches, and streams the CSV. The bar: at least 20x faster.

The images are 2,000 RGB JPEGs of 256x256 (photo-like: a dark object on white); the
bundle is a fashion-cnn trained for one epoch on tiny synthetic data (speed does not
depend on how well it was trained). The baseline loop is timed on the first
``--baseline`` images and compared per image, since it is slow.

Usage: python benchmarks/bench_predict.py [--images 2000] [--baseline 300]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _table import print_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def make_photos(folder: Path, n: int) -> list[Path]:
    from PIL import Image
    from synthetic import bar_images

    folder.mkdir(parents=True)
    x, _ = bar_images(n, seed=1)
    paths = []
    for i in range(n):
        img = Image.fromarray(255 - x[i]).resize((256, 256)).convert("RGB")
        p = folder / f"photo_{i:05d}.jpg"
        img.save(p, quality=90)
        paths.append(p)
    return paths


def make_bundle(tmp: Path) -> Path:
    from synthetic import write_idx

    from imgkit.data.prep import prepare
    from imgkit.data.prep_options import PrepOptions
    from imgkit.train.trainer import train

    idx = write_idx(tmp / "idx", train=200, test=50)
    prepare(["fashion-mnist"], tmp / "data", PrepOptions(idx_dir=str(idx)))
    train(tmp / "data", tmp / "run", model="fashion-cnn", epochs=1, batch_size=64)
    return tmp / "run"


def seed_loop(run: Path, paths: list[Path]) -> float:
    """What the seed did: one image at a time through model.predict."""
    import keras
    from PIL import Image

    model = keras.saving.load_model(run / "model.keras")
    t0 = time.perf_counter()
    for p in paths:
        img = Image.open(p).convert("L").resize((28, 28))
        x = np.asarray(img, dtype="float32")[None, :, :, None]
        model.predict(x, verbose=0)
    return time.perf_counter() - t0


def imgkit_predict(run: Path, folder: Path, out: Path) -> float:
    from click.testing import CliRunner

    from imgkit.commands import cli

    t0 = time.perf_counter()
    result = CliRunner().invoke(cli, ["predict", str(run), str(folder), "-o", str(out)])
    if result.exit_code != 0:
        raise SystemExit(result.output)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--baseline", type=int, default=300)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = make_photos(tmp / "photos", args.images)
        run = make_bundle(tmp)
        base_n = min(args.baseline, len(paths))
        seed_loop(run, paths[:5])  # warm-up: tracing, file cache
        base_t = seed_loop(run, paths[:base_n])
        ours_t = imgkit_predict(run, tmp / "photos", tmp / "preds.csv")

    base_rate, ours_rate = base_n / base_t, args.images / ours_t
    print(f"{args.images} JPEGs of 256x256 -> fashion-cnn (28x28x1)")
    print_table(
        [
            (
                "seed loop: predict per image (baseline)",
                base_n,
                f"{base_t:.1f} s",
                f"{base_rate:.0f}",
                "1.0x",
            ),
            (
                "imgkit predict (whole command)",
                args.images,
                f"{ours_t:.1f} s",
                f"{ours_rate:.0f}",
                f"{ours_rate / base_rate:.1f}x",
            ),
        ],
        ("run", "images", "time", "images/s", "vs baseline"),
    )
    print("bar: at least 20x")
    if ours_rate / base_rate < 20:
        raise SystemExit(f"missed the bar: {ours_rate / base_rate:.1f}x < 20x")


if __name__ == "__main__":
    main()
