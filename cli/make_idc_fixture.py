#!/usr/bin/env python3
"""Build a breast-histopathology (IDC) layout fixture from a real H&E image.

No labelled IDC patch set ships offline. This tiles a real H&E image (stardist 0.9.2's
``stardist/data/images/histo.jpg``, 300x500, read from the PyPI wheel as a zip) into
Kaggle's layout::

    OUT/<patient>/<0|1>/<patient>_idx5_x<X>_y<Y>_class<N>.png

What is real and what is not: the pixels are real H&E tissue; the "patients" are
separate regions of the one image (a 2x5 grid, so each region's patches share local
tissue, as one patient's patches do); the labels are a stand-in for IDC, not a
diagnosis: a patch is positive when its nuclei density (the share of pixels whose
hematoxylin stain, from scikit-image's colour deconvolution ``rgb2hed``, is above an
Otsu threshold) is in the top ``--positive`` share (default 28%, IDC's share). Dense
nuclei crowding is what invasive carcinoma looks like at this scale, which makes the
task learnable from the images, but a model trained on it says nothing about cancer.

Usage: python3 cli/make_idc_fixture.py OUT [--wheel stardist-0.9.2-*.whl] [--patch 50]
Prints OUT.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

MEMBER = "stardist/data/images/histo.jpg"


def histo_image(wheel: Path | None) -> np.ndarray:
    """histo.jpg as uint8 RGB, from ``wheel`` or a freshly downloaded stardist 0.9.2 wheel."""
    if wheel is None:
        tmp = Path(tempfile.mkdtemp(prefix="stardist-"))
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "stardist==0.9.2", "-d", tmp],
            check=True,
            stdout=sys.stderr,
        )
        wheel = next(tmp.glob("stardist-0.9.2-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        data = z.read(MEMBER)
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def nuclei_mask(rgb: np.ndarray) -> np.ndarray:
    """Pixels whose hematoxylin (nuclear) stain is above Otsu's threshold."""
    from skimage.color import rgb2hed
    from skimage.filters import threshold_otsu

    hema = rgb2hed(rgb)[..., 0]
    return hema > threshold_otsu(hema)


def build(
    out: Path,
    rgb: np.ndarray,
    patch: int = 50,
    stride: int = 10,
    grid: tuple[int, int] = (2, 5),
    positive: float = 0.28,
) -> dict:
    """Write the fixture; return counts (patients, patches, positives)."""
    mask = nuclei_mask(rgb)
    h, w = rgb.shape[:2]
    rh, rw = h // grid[0], w // grid[1]
    tiles = []  # (patient, x, y, density)
    for r in range(grid[0]):
        for c in range(grid[1]):
            patient = f"9{r * grid[1] + c + 1:04d}"
            for y in range(r * rh, (r + 1) * rh - patch + 1, stride):
                for x in range(c * rw, (c + 1) * rw - patch + 1, stride):
                    tiles.append((patient, x, y, float(mask[y : y + patch, x : x + patch].mean())))
    cut = np.quantile([t[3] for t in tiles], 1 - positive)
    positives = 0
    for patient, x, y, density in tiles:
        label = int(density > cut)
        positives += label
        path = out / patient / str(label) / f"{patient}_idx5_x{x}_y{y}_class{label}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb[y : y + patch, x : x + patch]).save(path)
    return {"patients": grid[0] * grid[1], "patches": len(tiles), "positives": positives}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--wheel", type=Path, default=None, help="stardist 0.9.2 wheel")
    parser.add_argument("--patch", type=int, default=50, help="patch side (Kaggle's: 50)")
    parser.add_argument("--stride", type=int, default=10, help="step between patches")
    parser.add_argument("--positive", type=float, default=0.28, help="share labelled 1")
    args = parser.parse_args(argv)
    counts = build(
        args.out, histo_image(args.wheel), args.patch, args.stride, positive=args.positive
    )
    print(
        f"{counts['patients']} patients, {counts['patches']} patches, "
        f"{counts['positives']} positive ({counts['positives'] / counts['patches']:.1%})",
        file=sys.stderr,
    )
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
