"""Benchmark: ``imgkit segment`` images/s against a bare ``model.predict`` on the same
decoded arrays (bar: at most 15% overhead, decoding and writing the mask PNGs included).

The bundle is a unet-mobilenetv2 at 128x128 trained for one epoch on synthetic discs
with random weights (speed does not depend on how well it learned). The images are
RGB PNGs of 160x160, so every mask is also resized back to its image's own size.

Usage: python benchmarks/bench_segment.py [--images 600] [--size 128]
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


def make_bundle(tmp: Path, size: int) -> Path:
    from seg_data import write_disc_pairs

    from imgkit.data.prep import prepare
    from imgkit.data.prep_options import PrepOptions
    from imgkit.train.trainer import train

    images, masks = write_disc_pairs(tmp / "pairs", 24, size=(size, size))
    prepare([str(images)], tmp / "data", PrepOptions(masks=str(masks), val=0.25, test=0))
    train(tmp / "data", tmp / "run", model="unet-mobilenetv2", input_size=(size, size),
          weights="none", epochs=1, batch_size=8)  # fmt: skip
    return tmp / "run"


def make_images(folder: Path, n: int) -> list[Path]:
    from PIL import Image
    from seg_data import disc_pair

    rng = np.random.default_rng(1)
    folder.mkdir(parents=True)
    paths = []
    for i in range(n):
        image, _ = disc_pair(rng, (160, 160))
        p = folder / f"img{i:05d}.png"
        Image.fromarray(image).save(p)
        paths.append(p)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()

    import keras
    from click.testing import CliRunner

    from imgkit.commands import cli
    from imgkit.data.images import load_array

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run = make_bundle(tmp, args.size)
        paths = make_images(tmp / "new", args.images)
        arrays = np.stack([load_array(p, (args.size, args.size), 3) for p in paths])
        # Both sides start cold: load the model, trace it, predict. The baseline's
        # images are already decoded; imgkit's are decoded, resized back and written.
        t0 = time.perf_counter()
        model = keras.saving.load_model(run / "model.keras")
        model.predict(arrays, batch_size=args.batch, verbose=0)
        bare = time.perf_counter() - t0

        t0 = time.perf_counter()
        result = CliRunner().invoke(
            cli, ["segment", str(run), str(tmp / "new"), "-o", str(tmp / "masks"),
                  "--batch-size", str(args.batch)],
        )  # fmt: skip
        ours = time.perf_counter() - t0
        if result.exit_code != 0:
            raise SystemExit(result.output)
        written = len(list((tmp / "masks").glob("*.png")))

    n = args.images
    print(f"unet-mobilenetv2 at {args.size}x{args.size}, {n} PNGs of 160x160, batch {args.batch}")
    print_table(
        [
            (
                "load_model + model.predict, decoded arrays (baseline)",
                f"{bare:.1f} s",
                f"{n / bare:.1f}",
                "1.00x",
            ),
            (
                f"imgkit segment (whole command, {written} masks written)",
                f"{ours:.1f} s",
                f"{n / ours:.1f}",
                f"{ours / bare:.2f}x",
            ),
        ],  # fmt: skip
        ("run", "time", "images/s", "time vs baseline"),
    )
    print(f"overhead: {100 * (ours / bare - 1):+.1f}% (bar: at most +15%, model load included)")
    if ours / bare > 1.15:
        raise SystemExit(f"missed the bar: {100 * (ours / bare - 1):+.1f}% > +15%")


if __name__ == "__main__":
    main()
