"""Benchmark: ``imgkit tta -n 10`` against ten ``imgkit predict`` passes over one folder.

Ten views per image cost at most what ten predict runs cost, and less by design: each
image is decoded once, not ten times, and all views of a batch go through the model in
one call of batch-size x 10 rows. The bar: at most 1.0x the time of ten predict passes.

Two comparisons, both timed in this process (median of ``--repeat`` runs, after one
warm-up of each): the whole commands, as a user would run them (ten predict commands
load the bundle ten times), and the library with the model loaded once, which leaves
only decoding and batching to compare.

The images are 500 RGB JPEGs of 64x64; the bundle is a fashion-cnn trained for one
epoch on tiny synthetic data, as in bench_predict.py (speed does not depend on how
well it was trained).

Usage: python benchmarks/bench_tta.py [--images 500] [--views 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from _table import best_of, print_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def make_photos(folder: Path, n: int) -> None:
    from PIL import Image
    from synthetic import bar_images

    folder.mkdir(parents=True)
    x, _ = bar_images(n, seed=1)
    for i in range(n):
        img = Image.fromarray(255 - x[i]).resize((64, 64)).convert("RGB")
        img.save(folder / f"{i:05d}.jpg", quality=90)


def make_bundle(tmp: Path) -> Path:
    from synthetic import write_idx

    from imgkit.data.prep import prepare
    from imgkit.data.prep_options import PrepOptions
    from imgkit.train.trainer import train

    idx = write_idx(tmp / "idx", train=200, test=50)
    prepare(["fashion-mnist"], tmp / "data", PrepOptions(idx_dir=str(idx)))
    train(tmp / "data", tmp / "run", model="fashion-cnn", epochs=1, batch_size=64)
    return tmp / "run"


def command(*args: str) -> None:
    from click.testing import CliRunner

    from imgkit.commands import cli

    result = CliRunner().invoke(cli, list(args))
    if result.exit_code != 0:
        raise SystemExit(result.output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--views", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from imgkit.bundle import load_bundle
    from imgkit.infer.options import InferOptions
    from imgkit.infer.run import predict_inputs

    n, v = args.images, args.views
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photos, out = tmp / "photos", str(tmp / "out.csv")
        make_photos(photos, n)
        run = make_bundle(tmp)

        def predicts_cmd():
            for _ in range(v):
                command("predict", str(run), str(photos), "-o", out)

        def tta_cmd():
            command("tta", str(run), str(photos), "-n", str(v), "-o", out)

        bundle = load_bundle(run)
        paths = sorted(photos.iterdir())

        def predicts_lib():
            for _ in range(v):
                for _df in predict_inputs(bundle, paths):
                    pass

        def tta_lib():
            for _df in predict_inputs(
                bundle, [photos], options=InferOptions(batch_size=32), views=v
            ):
                pass

        for fn in (predicts_cmd, tta_cmd, predicts_lib, tta_lib):
            fn()  # warm-up: tracing for each batch shape, the file cache
        times = {fn.__name__: best_of(fn, args.repeat) for fn in (predicts_cmd, tta_cmd)}
        times |= {fn.__name__: best_of(fn, args.repeat) for fn in (predicts_lib, tta_lib)}

    scored = n * v
    rows = []
    for what, base, ours in (
        ("commands", "predicts_cmd", "tta_cmd"),
        ("library, model loaded once", "predicts_lib", "tta_lib"),
    ):
        b, t = times[base], times[ours]
        rows.append((f"{v} x predict ({what})", scored, f"{b:.2f} s", f"{scored / b:.0f}", "1.00x"))
        rows.append(
            (f"tta -n {v} ({what})", scored, f"{t:.2f} s", f"{scored / t:.0f}", f"{t / b:.2f}x")
        )
    print(f"{n} JPEGs of 64x64 -> fashion-cnn (28x28x1), {v} views each, median of {args.repeat}")
    print_table(rows, ("run", "views scored", "time", "views/s", "time vs 10 x predict"))
    print("bar: tta at most 1.0x the time of ten predict passes")
    if times["tta_cmd"] > times["predicts_cmd"]:
        raise SystemExit("missed the bar: tta took longer than ten predict passes")


if __name__ == "__main__":
    main()
