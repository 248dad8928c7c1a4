"""A data set with known problems, built from real images, for ``bench_audit.py``.

Base images: Fashion-MNIST items (60 a class, upscaled to 112x112: many are
look-alikes, e.g. sneakers of one shape) and 128x128 tiles of real photographs from
scikit-image, scikit-learn and matplotlib (class ``photo``; tiles of one texture,
grass or gravel, are look-alikes too). Then, with a fixed seed:

- copies of base images, one kind each: exact (same pixels, as BMP), re-encoded
  JPEG (quality 70), resized (x0.75), cropped (a 92% window, so about 4% a side, at
  a random place), brighter (x1.3), blurred (Gaussian, radius 1); a few originals get
  two copies. Copies keep their original's class, so prep's random split puts some
  in another split: leaks.
- foreign images: 10 photo tiles filed under Fashion classes, 3 Fashion items under
  ``photo``, and constant, near-blank and noise images;
- wrong labels: Fashion items filed under another Fashion class;
- ``against/``: a folder like a Kaggle test set, with copies of some data images
  (every one a cross-set leak) and fresh images (Fashion-MNIST's test set, held-out
  photo tiles).

``truth.json`` says which file is what (paths relative to ``src/`` or the set).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

FASHION = Path("/usr/share/datasets/fashion-mnist")
CLASSES = [
    "tshirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "boot",
]
COPY_KINDS = ("exact", "jpeg", "resized", "crop4", "bright", "blur")
PHOTOS = [
    "astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "retina",
    "hubble_deep_field", "immunohistochemistry", "brick", "grass", "gravel", "moon",
    "page", "text", "clock",
]  # fmt: skip


def fashion(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST images (n, 28, 28) and labels from Debian's dataset-fashion-mnist."""
    stem = "train" if split == "train" else "t10k"
    with gzip.open(FASHION / f"{stem}-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(FASHION / f"{stem}-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)
    return x, y


def photo_tiles(side: int = 128, per_photo: int = 16, seed: int = 0) -> list[Image.Image]:
    """Non-overlapping tiles of real photographs (at most ``per_photo`` from each)."""
    import matplotlib.cbook
    import skimage.data
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    photos = [getattr(skimage.data, n)() for n in PHOTOS]
    photos += list(load_sample_images().images)
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        photos.append(np.asarray(Image.open(f).convert("RGB")))
    tiles = []
    for p in photos:
        img = Image.fromarray(p).convert("RGB")
        w, h = img.size
        boxes = [
            (x, y, x + side, y + side)
            for y in range(0, h - side + 1, side)
            for x in range(0, w - side + 1, side)
        ]
        kept = 0
        for k in rng.permutation(len(boxes)):
            tile = img.crop(boxes[k])
            # A flat tile (night sky, paper) is a near-blank image, not a clean base image.
            if kept < per_photo and np.asarray(tile.convert("L")).std() >= 12:
                tiles.append(tile)
                kept += 1
    return tiles


def make_copy(img: Image.Image, kind: str, rng) -> Image.Image:
    """A copy of ``img`` of one kind (see the module docstring)."""
    w, h = img.size
    if kind in ("exact", "jpeg"):
        return img
    if kind == "resized":
        return img.resize((round(w * 0.75), round(h * 0.75)), Image.BILINEAR)
    if kind == "crop4":
        cw, ch = round(w * 0.92), round(h * 0.92)
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        return img.crop((x, y, x + cw, y + ch))
    if kind == "bright":
        return ImageEnhance.Brightness(img).enhance(1.3)
    if kind == "blur":
        return img.filter(ImageFilter.GaussianBlur(1))
    raise ValueError(kind)


def _save(img: Image.Image, path: Path, kind: str = "") -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "jpeg":
        path = path.with_suffix(".jpg")
        img.convert("RGB").save(path, quality=70)
    elif kind == "exact":
        path = path.with_suffix(".bmp")
        img.save(path)
    else:
        img.save(path.with_suffix(".png"))
        path = path.with_suffix(".png")
    return path.as_posix()


def _specials(rng, side: int = 112) -> list[tuple[str, Image.Image]]:
    """Constant, near-blank and noise images."""
    out = []
    for k in range(3):
        out.append((f"constant{k}", Image.new("RGB", (side, side), (40 + 80 * k,) * 3)))
        blank = np.full((side, side, 3), 250, np.uint8)
        blank[rng.integers(0, side, 20), rng.integers(0, side, 20)] = 0  # a few specks
        out.append((f"blank{k}", Image.fromarray(blank)))
        out.append((f"noise{k}", Image.fromarray(rng.integers(0, 256, (side, side, 3), np.uint8))))
    return out


def build(root: Path, per_class: int = 60, copies: int = 25, seed: int = 0) -> dict:
    """Write ``root/src`` (class folders) and ``root/against``; return the truth."""
    rng = np.random.default_rng(seed)
    x, y = fashion("train")
    base: list[tuple[str, Image.Image]] = []  # (class, image)
    for c, name in enumerate(CLASSES):
        for i in rng.choice(np.flatnonzero(y == c), per_class, replace=False):
            base.append((name, Image.fromarray(x[i]).resize((112, 112), Image.BILINEAR)))
    tiles = photo_tiles(seed=seed)
    order = rng.permutation(len(tiles))
    held_out = [tiles[i] for i in order[:20]]  # fresh photos for against/
    base += [("photo", tiles[i]) for i in order[20:]]
    n_fashion = per_class * len(CLASSES)
    truth: dict = {"clusters": [], "foreign": [], "wrong": [], "against_leaks": []}
    picks = rng.permutation(len(base))
    wrong = {int(i) for i in picks if i < n_fashion}
    wrong = {int(i) for i in picks[np.isin(picks, list(wrong))][:30]}
    foreign_in = {int(i) for i in picks if i >= n_fashion}
    foreign_in = {int(i) for i in picks[np.isin(picks, list(foreign_in))][:10]}
    names = []
    for i, (cls, img) in enumerate(base):
        folder = cls
        if i in wrong:
            folder = CLASSES[(CLASSES.index(cls) + 1 + int(rng.integers(0, 9))) % 10]
        if i in foreign_in:
            folder = CLASSES[int(rng.integers(0, 10))]
        rel = _save(img, root / "src" / folder / f"b{i:04d}")
        names.append(Path(rel).relative_to(root / "src").as_posix())
        if i in wrong:
            truth["wrong"].append(names[-1])
        if i in foreign_in:
            truth["foreign"].append(names[-1])
    for k, i in enumerate(rng.choice(len(x), 3, replace=False)):  # Fashion filed as photo
        item = Image.fromarray(x[i]).resize((112, 112), Image.BILINEAR)
        rel = _save(item, root / "src" / "photo" / f"f{k:02d}")
        truth["foreign"].append(Path(rel).relative_to(root / "src").as_posix())
    for name, img in _specials(rng):
        rel = _save(img, root / "src" / CLASSES[int(rng.integers(0, 10))] / name)
        truth["foreign"].append(Path(rel).relative_to(root / "src").as_posix())
    taken = wrong | foreign_in
    sources = [int(i) for i in picks if int(i) not in taken]
    n_copies = copies * len(COPY_KINDS)
    for k in range(n_copies):
        i, kind = sources[k], COPY_KINDS[k % len(COPY_KINDS)]
        cls = Path(names[i]).parent.as_posix()
        cluster = [names[i]]
        second = [COPY_KINDS[(k + 3) % len(COPY_KINDS)]] if k % 15 == 0 else []
        for j, kd in enumerate([kind, *second]):
            copy = make_copy(base[i][1], kd, rng)
            rel = _save(copy, root / "src" / cls / f"c{k:03d}{'ab'[j]}-{kd}", kd)
            cluster.append(Path(rel).relative_to(root / "src").as_posix())
        truth["clusters"].append({"members": cluster, "kinds": [kind, *second]})
    for k in range(30):  # copies in against/: every one leaks
        i, kind = sources[n_copies + k], COPY_KINDS[k % len(COPY_KINDS)]
        rel = _save(make_copy(base[i][1], kind, rng), root / "against" / f"t{k:03d}-{kind}", kind)
        truth["against_leaks"].append([names[i], Path(rel).relative_to(root).as_posix()])
    xt, _ = fashion("test")
    for k, i in enumerate(rng.choice(len(xt), 100, replace=False)):
        _save(Image.fromarray(xt[i]).resize((112, 112)), root / "against" / f"u{k:03d}")
    for k, img in enumerate(held_out):
        _save(img, root / "against" / f"p{k:03d}")
    (root / "truth.json").write_text(json.dumps(truth, indent=1))
    return truth


def scale_set(root: Path, n: int, side: int = 28) -> Path:
    """``n`` Fashion-MNIST items as PNGs in class folders (for timing only).

    ``side`` 28 keeps the originals; 112 upscales them (bilinear) as the quality set
    does, so key-point matching has something to work on: the worst case for checking
    pairs, since Fashion-MNIST is dense with look-alikes. Beyond the 60,000 training
    items the test set's 10,000 are used, then the items repeat (exact copies).
    """
    x, y = fashion("train")
    xt, yt = fashion("test")
    x, y = np.concatenate([x, xt]), np.concatenate([y, yt])
    for i in range(n):
        folder = root / CLASSES[y[i % len(y)]]
        folder.mkdir(parents=True, exist_ok=True)
        img = Image.fromarray(x[i % len(x)])
        if side != 28:
            img = img.resize((side, side), Image.BILINEAR)
        img.save(folder / f"{i:06d}.png", compress_level=1)
    return root
