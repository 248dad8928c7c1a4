"""Build real image+mask tiles from stardist's nuclei image, for the segmentation workflow.

No segmentation data set can be downloaded on machines without internet; PyPI's
``stardist`` 0.9.2 ships one real pair: ``stardist/data/images/img2d.tif`` (512x512
fluorescence nuclei, 2018 Data Science Bowl) and ``mask2d.tif`` (its instance labels;
``> 0`` is the binary nuclei mask). This cuts them into non-overlapping tiles.

The pair is read from an installed stardist, else from a stardist wheel: ``--wheel
PATH``, or one fetched with ``pip download --no-deps stardist==0.9.2`` (a package
registry is reachable here even offline). Reading the wheel as a zip needs no
install; ``tifffile`` decodes the TIFFs.

Writes into OUT:
  images/tNN.png, masks/tNN.png   tiles to train on (masks 0/255)
  new/tNN.png, new_masks/tNN.png  held-out tiles (every 4th): segment these, score them

Usage: python cli/make_nuclei_fixture.py OUT [--tile 128] [--wheel PATH]
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

MEMBERS = ("stardist/data/images/img2d.tif", "stardist/data/images/mask2d.tif")
PIN = "stardist==0.9.2"


def _from_installed() -> list[bytes] | None:
    try:
        import stardist
    except ImportError:
        return None
    root = Path(stardist.__file__).parent.parent
    files = [root / m for m in MEMBERS]
    return [f.read_bytes() for f in files] if all(f.is_file() for f in files) else None


def _from_wheel(wheel: Path) -> list[bytes]:
    with zipfile.ZipFile(wheel) as z:
        return [z.read(m) for m in MEMBERS]


def _download_wheel(folder: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", PIN, "-d", str(folder)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(folder.glob("stardist-*.whl"))
    if done.returncode != 0 or not wheels:
        sys.exit(
            f"cannot get the stardist wheel ({PIN}) from the package index: "
            f"{(done.stderr or done.stdout).strip().splitlines()[-1:]}; pass --wheel PATH "
            "to a stardist 0.9.2 wheel, or give your own images and masks to the workflow"
        )
    return wheels[0]


def load_pair(wheel: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """The nuclei image (uint8, contrast stretched) and its binary mask."""
    import tifffile

    raw = _from_wheel(wheel) if wheel else _from_installed()
    if raw is None:
        with tempfile.TemporaryDirectory() as tmp:
            raw = _from_wheel(_download_wheel(Path(tmp)))
    image, labels = (tifffile.imread(io.BytesIO(b)) for b in raw)
    lo, hi = np.percentile(image, (1, 99.8))
    image = np.clip((image.astype(np.float32) - lo) / max(hi - lo, 1e-6), 0, 1)
    return (image * 255).round().astype(np.uint8), labels > 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--tile", type=int, default=128, help="tile side in pixels")
    parser.add_argument("--wheel", type=Path, default=None, help="a stardist 0.9.2 wheel")
    args = parser.parse_args()

    image, mask = load_pair(args.wheel)
    t = args.tile
    folders = {k: args.out / k for k in ("images", "masks", "new", "new_masks")}
    for f in folders.values():
        f.mkdir(parents=True, exist_ok=True)
    n = 0
    for y in range(0, image.shape[0] - t + 1, t):
        for x in range(0, image.shape[1] - t + 1, t):
            tile, tile_mask = image[y : y + t, x : x + t], mask[y : y + t, x : x + t]
            if not tile_mask.any():
                continue  # an empty mask would be rejected by prep anyway
            held_out = n % 4 == 3
            img_dir, mask_dir = ("new", "new_masks") if held_out else ("images", "masks")
            Image.fromarray(tile).save(folders[img_dir] / f"t{n:02d}.png")
            Image.fromarray(tile_mask.astype(np.uint8) * 255).save(
                folders[mask_dir] / f"t{n:02d}.png"
            )
            n += 1
    print(args.out)


if __name__ == "__main__":
    main()
