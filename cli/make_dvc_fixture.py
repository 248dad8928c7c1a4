"""Build a Kaggle Dogs-vs-Cats-format fixture from real images that ship offline.

No cats-vs-dogs photos can be downloaded on machines without internet, so this writes
the same *format* from a real binary image task. Two sources:

- ``lfw`` (default, the easy smoke test): scikit-image's ``lfw_subset``, 200 real
  grayscale photos, 25x25: 100 faces (``dog.N.jpg``) and 100 non-faces (``cat.N.jpg``).
  Every recipe scores about 100% on it.
- ``fashion`` (the hard benchmark): two visually close Fashion-MNIST classes, Shirt
  (``dog``) and T-shirt/top (``cat``), from Debian's ``dataset-fashion-mnist`` (``--pair
  DOG,CAT`` names two others, e.g. Sandal,Sneaker, which a recipe learns well), each
  garment rendered as an RGB product photo at Kaggle-like sizes: a random fabric colour
  shaded by the garment's own pixels, on a light backdrop with a soft gradient, placed
  at a random scale and offset in a canvas 300-500 px wide and 250-450 px high, with
  sensor noise and JPEG quality 80-95. Shirts and T-shirts differ in sleeves, collars
  and buttons that 28x28 pixels barely show, so no recipe gets them all right: it
  tells a better recipe from a worse one. ``--count`` images in all (default 2,000),
  half of each class, drawn from the official training set.

Writes into OUT:
  train.zip               train/cat.N.jpg, train/dog.N.jpg   (labelled, 70%)
  test.zip                test/N.jpg                         (unlabeled, 30%, ids 1..n)
  sample_submission.csv   id,label  (label 0.5), the competition's sample layout
  test_labels.csv         id,label  the held-out truth (1 = dog), to score a submission

Usage: python cli/make_dvc_fixture.py OUT [--source lfw|fashion] [--size 96] [--seed 0]
       [--count 2000] [--pair Shirt,T-shirt/top]
"""

from __future__ import annotations

import argparse
import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

# Fashion-MNIST's class names, in label order.
FASHION_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
DEFAULT_PAIR = "Shirt,T-shirt/top"  # dog, cat: the hard pair


def lfw_images(size: int, seed: int) -> tuple[list, np.ndarray]:
    """lfw_subset as (JPEG-able RGB images at size x size, labels dog/cat)."""
    try:
        from skimage.data import lfw_subset
    except ImportError:
        raise SystemExit("needs scikit-image: pip install scikit-image") from None
    gray = lfw_subset()  # 100 faces, then 100 non-faces
    images = [
        Image.fromarray((g * 255).round().astype(np.uint8)).resize((size, size), Image.BICUBIC)
        for g in gray
    ]
    return [im.convert("RGB") for im in images], np.array(["dog"] * 100 + ["cat"] * 100)


def render_photo(garment: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """One 28x28 Fashion-MNIST garment (light on black) as an RGB product photo."""
    width, height = int(rng.integers(300, 501)), int(rng.integers(250, 451))
    side = int(min(width, height) * rng.uniform(0.55, 0.9))
    shape = np.asarray(
        Image.fromarray(garment).resize((side, side), Image.BICUBIC), dtype=np.float32
    )
    alpha = np.clip(shape / 255.0 * 1.6, 0.0, 1.0)[..., None]
    # Fabric: a random colour, shaded by the garment's own intensities (its folds and seams).
    fabric = rng.uniform(20, 235, size=3).astype(np.float32)
    shade = (0.55 + 0.45 * shape / 255.0)[..., None]
    garment_rgb = np.clip(fabric * shade * 1.25, 0, 255)
    # Backdrop: light, tinted, with a soft vertical gradient like a studio sweep.
    top = rng.uniform(185, 250, size=3).astype(np.float32)
    bottom = np.clip(top - rng.uniform(0, 45), 0, 255)
    ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    canvas = np.broadcast_to(top + (bottom - top) * ramp, (height, width, 3)).copy()
    y0 = int(rng.integers(0, height - side + 1))
    x0 = int(rng.integers(0, width - side + 1))
    patch = canvas[y0 : y0 + side, x0 : x0 + side]
    canvas[y0 : y0 + side, x0 : x0 + side] = patch * (1 - alpha) + garment_rgb * alpha
    canvas += rng.normal(0.0, rng.uniform(2.0, 6.0), size=canvas.shape).astype(np.float32)
    return Image.fromarray(np.clip(canvas, 0, 255).round().astype(np.uint8))


def fashion_pair(text: str) -> dict[str, int]:
    """``--pair`` ("DOG,CAT", two Fashion-MNIST class names) as {"dog": id, "cat": id}."""
    names = [name.strip() for name in text.split(",")]
    lowered = [name.lower() for name in FASHION_NAMES]
    if len(names) != 2 or names[0].lower() == names[1].lower():
        raise SystemExit(f"--pair {text!r}: give two different class names, DOG,CAT")
    for name in names:
        if name.lower() not in lowered:
            raise SystemExit(f"--pair: {name!r} is not one of {', '.join(FASHION_NAMES)}")
    return {"dog": lowered.index(names[0].lower()), "cat": lowered.index(names[1].lower())}


def fashion_images(count: int, seed: int, pair: str = DEFAULT_PAIR) -> tuple[list, np.ndarray]:
    """``count`` photos of the pair's two garments (half each), rendered; labels dog / cat."""
    from imgkit.data.sources.fashion_mnist import DEBIAN_DIR
    from imgkit.data.sources.idx_folder import find_pairs, read_idx

    pairs = find_pairs(DEBIAN_DIR) if DEBIAN_DIR.is_dir() else {}
    if "train" not in pairs:
        raise SystemExit(
            f"needs Fashion-MNIST in {DEBIAN_DIR}: apt-get install dataset-fashion-mnist"
        )
    images_file, labels_file = pairs["train"]
    pixels, ids = read_idx(images_file), read_idx(labels_file)
    rng = np.random.default_rng(seed)
    chosen, labels = [], []
    for name, label_id in fashion_pair(pair).items():
        rows = np.flatnonzero(ids == label_id)
        chosen.extend(rng.choice(rows, size=count // 2, replace=False).tolist())
        labels.extend([name] * (count // 2))
    photos = [render_photo(pixels[i], rng) for i in chosen]
    return photos, np.array(labels)


def jpeg_bytes(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--source", choices=("lfw", "fashion"), default="lfw")
    parser.add_argument("--size", type=int, default=96, help="lfw: side of the written JPEGs")
    parser.add_argument("--count", type=int, default=2000, help="fashion: images in all")
    parser.add_argument(
        "--pair",
        default=DEFAULT_PAIR,
        help="fashion: the two Fashion-MNIST classes, DOG,CAT (default: the hard pair "
        f"{DEFAULT_PAIR}; Sandal,Sneaker is one a recipe learns well)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-fraction", type=float, default=0.3)
    args = parser.parse_args()

    if args.source == "lfw":
        images, labels = lfw_images(args.size, args.seed)
        qualities = np.full(len(images), 92)
    else:
        images, labels = fashion_images(args.count, args.seed, args.pair)
        qualities = np.random.default_rng(args.seed + 1).integers(80, 96, size=len(images))
    order = np.random.default_rng(args.seed).permutation(len(images))
    n_test = int(round(len(images) * args.test_fraction))
    test_idx, train_idx = order[:n_test], order[n_test:]

    args.out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(args.out / "train.zip", "w") as z:
        counters = {"cat": 0, "dog": 0}
        for i in sorted(train_idx):
            counters[labels[i]] += 1
            name = f"train/{labels[i]}.{counters[labels[i]]}.jpg"
            z.writestr(name, jpeg_bytes(images[i], int(qualities[i])))
    truth = []
    with zipfile.ZipFile(args.out / "test.zip", "w") as z:
        for k, i in enumerate(test_idx, start=1):
            z.writestr(f"test/{k}.jpg", jpeg_bytes(images[i], int(qualities[i])))
            truth.append((k, int(labels[i] == "dog")))
    ids = [k for k, _ in truth]
    (args.out / "sample_submission.csv").write_text(
        "id,label\n" + "".join(f"{k},0.5\n" for k in ids)
    )
    (args.out / "test_labels.csv").write_text(
        "id,label\n" + "".join(f"{k},{y}\n" for k, y in truth)
    )
    print(args.out)


if __name__ == "__main__":
    main()
