"""Benchmark: a default U-Net on multi-class masks built from real images, against
per-pixel baselines (mean IoU over the classes, background included).

The set: real Fashion-MNIST garments (trouser, bag, ankle boot: mask values 1, 2, 3)
pasted, two or three to an image at 1.25x to 1.6x their size, onto crops of real
photographs (scikit-image's astronaut, coffee, chelsea, rocket, retina, ...). A
garment's mask is its silhouette (pixels above 10 of 255); where two overlap the later
one wins, in the image and in the mask. Masks are single-channel index PNGs with a
--mask-classes file; the crops for test images come from other photographs than
train's, so the backgrounds are new too.

It runs ``imgkit prep --masks --mask-classes``, ``imgkit train`` (unet-mobilenetv2, its
recipe and the ImageNet MobileNetV2 encoder, only --epochs shortened), ``imgkit
segment`` on the test split and ``imgkit eval``, then scores on the same test masks:
- majority: each pixel the class most common at that position in the train masks;
- colour: a per-pixel classifier (logistic regression on the pixel's RGB and its 5x5
  neighbourhood mean; scikit-learn) trained on the train images' pixels.

Usage: nice -n 10 python benchmarks/bench_multiclass_seg.py [--train 240] [--epochs 15]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _table import print_table
from PIL import Image

FASHION = Path("/usr/share/datasets/fashion-mnist")
GARMENTS = {1: "trouser", 8: "bag", 9: "ankle-boot"}  # Fashion-MNIST label -> class name
TRAIN_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry")
TEST_PHOTOS = ("retina", "hubble_deep_field", "colorwheel", "cat")
WEIGHTS = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"


def _weights() -> str:
    here = Path(__file__).resolve().parents[1]
    for p in (here.parent / "shared/weights" / WEIGHTS, here.parent.parent / "shared/weights"
              / WEIGHTS, Path("/work/shared/weights") / WEIGHTS):  # fmt: skip
        if p.is_file():
            return str(p)
    sys.exit(f"needs the MobileNetV2 ImageNet file {WEIGHTS} (../shared/weights)")


def _fashion(split: str) -> tuple[np.ndarray, np.ndarray]:
    prefix = "train" if split == "train" else "t10k"
    with gzip.open(FASHION / f"{prefix}-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(FASHION / f"{prefix}-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    keep = np.isin(labels, list(GARMENTS))
    return images[keep], labels[keep]


def _photos(names) -> list[np.ndarray]:
    import skimage.data

    out = []
    for name in names:
        a = getattr(skimage.data, name)()
        out.append(np.stack([a] * 3, -1) if a.ndim == 2 else a[..., :3])
    return out


def scene(rng, photos, garments, labels, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One (RGB image, class values) pair: garments pasted onto a photo crop."""
    values = {g: i + 1 for i, g in enumerate(GARMENTS)}
    photo = photos[int(rng.integers(len(photos)))]
    side = int(rng.integers(size, min(photo.shape[:2]) + 1))
    y, x = (
        int(rng.integers(photo.shape[0] - side + 1)),
        int(rng.integers(photo.shape[1] - side + 1)),
    )
    crop = Image.fromarray(photo[y : y + side, x : x + side]).resize((size, size))
    image = np.asarray(crop, dtype=np.float32).copy()
    mask = np.zeros((size, size), np.uint8)
    for _ in range(int(rng.integers(2, 4))):
        i = int(rng.integers(len(garments)))
        g = int(28 * rng.uniform(1.25, 1.6))
        pixels = np.asarray(Image.fromarray(garments[i]).resize((g, g), Image.Resampling.BILINEAR))
        shape = pixels > 10
        top, left = int(rng.integers(0, size - g + 1)), int(rng.integers(0, size - g + 1))
        region = image[top : top + g, left : left + g]
        region[shape] = pixels[shape, None].astype(np.float32)
        mask[top : top + g, left : left + g][shape] = values[int(labels[i])]
    return image.astype(np.uint8), mask


def build(root: Path, n_train: int, n_test: int, size: int, seed: int = 0) -> Path:
    """Images, masks and classes.txt under ``root``; a CSV of the test files' split."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for part, n, photos, fashion in (
        ("train", n_train, _photos(TRAIN_PHOTOS), _fashion("train")),
        ("test", n_test, _photos(TEST_PHOTOS), _fashion("test")),
    ):
        for i in range(n):
            image, mask = scene(rng, photos, *fashion, size)
            Image.fromarray(image).save(root / "images" / f"{part}{i:04d}.png")
            Image.fromarray(mask, mode="L").save(root / "masks" / f"{part}{i:04d}.png")
    (root / "classes.txt").write_text("background\n" + "\n".join(GARMENTS.values()) + "\n")
    return root


def _cli(*args, env) -> str:
    cmd = [sys.executable, "-m", "imgkit", *[str(a) for a in args]]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def _pixels(root: Path, names) -> tuple[np.ndarray, np.ndarray]:
    from scipy.ndimage import uniform_filter

    xs, ys = [], []
    for n in names:
        img = np.asarray(Image.open(root / "images" / f"{n}.png"), np.float32) / 255
        local = np.stack([uniform_filter(img[..., c], 5) for c in range(3)], -1)
        xs.append(np.concatenate([img, local], -1).reshape(-1, 6))
        ys.append(np.asarray(Image.open(root / "masks" / f"{n}.png")).reshape(-1))
    return np.concatenate(xs), np.concatenate(ys)


def baselines(root: Path, train: list[str], test: list[str], k: int) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression

    from imgkit.data.classmasks import confusion, iou_summary

    names = [str(i) for i in range(k)]
    masks = np.stack([np.asarray(Image.open(root / "masks" / f"{n}.png")) for n in train])
    counts = np.stack([(masks == c).sum(0) for c in range(k)], -1)
    majority = counts.argmax(-1)
    truth = [np.asarray(Image.open(root / "masks" / f"{n}.png")) for n in test]
    m = sum(confusion(majority, t, k) for t in truth)
    out = {"majority per pixel": iou_summary(m, names)["mean_iou"]}
    x, y = _pixels(root, train)
    pick = np.random.default_rng(0).choice(len(x), min(len(x), 200_000), replace=False)
    clf = LogisticRegression(max_iter=500).fit(x[pick], y[pick])
    xt, yt = _pixels(root, test)
    out["colour per pixel (logistic)"] = iou_summary(confusion(clf.predict(xt), yt, k), names)[
        "mean_iou"
    ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=240, help="train+val scenes")
    parser.add_argument("--test", type=int, default=80)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-mcseg-"))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    src = build(work / "src", args.train, args.test, args.size)
    data, run = work / "data", work / "run"
    _cli("prep", src / "images", "--masks", src / "masks", "--mask-classes", src / "classes.txt",
         "-o", data, "--val", "0.2", "--test", "0", env=env)  # fmt: skip
    _move_test_split(data)
    started = time.perf_counter()
    _cli("train", data, "-o", run, "--model", "unet-mobilenetv2", "--size", args.size,
         "--epochs", args.epochs, "--weights", _weights(), env=env)  # fmt: skip
    train_s = time.perf_counter() - started
    _cli("segment", run, data, "--split", "test", "-o", work / "pred", env=env)
    _cli("eval", work / "pred", "--truth", data, "-o", work / "eval", env=env)
    metrics = json.loads((work / "eval" / "metrics.json").read_text())
    from imgkit.data.dataset import Dataset

    ds = Dataset.load(data)
    stems = lambda split: [Path(p).stem for p in ds.rows(split)["path"]]  # noqa: E731
    k = len(ds.mask_classes)
    scores = baselines(src, stems("train"), stems("test"), k)
    table = [(name, f"{v:.3f}", "") for name, v in scores.items()]
    per_class = ", ".join(f"{n} {v:.3f}" for n, v in metrics["per_class_iou"].items())
    table.append((f"unet-mobilenetv2, {args.epochs} epochs", f"{metrics['mean_iou']:.3f}",
                  per_class))  # fmt: skip
    counts = ", ".join(f"{len(stems(s))} {s}" for s in ("train", "val", "test"))
    print(f"{counts} scenes of {args.size}x{args.size}; training {train_s / 60:.1f} min; {work}")
    print_table(table, ("test split", "mean IoU", "per class"))


def _move_test_split(data: Path) -> None:
    """Put the scenes on other photographs (test*) in the test split, the rest as prep
    split them: the test backgrounds are then unseen photographs."""
    import pandas as pd

    from imgkit.data.dataset import Dataset

    manifest = pd.read_csv(data / "manifest.csv", dtype=str, keep_default_na=False)
    is_test = manifest["path"].map(lambda p: Path(p).name.startswith("test"))
    train_like = manifest["split"].where(~is_test, "test")
    manifest["split"] = train_like
    manifest.to_csv(data / "manifest.csv", index=False)
    Dataset.load(data)  # still a dataset


if __name__ == "__main__":
    main()
