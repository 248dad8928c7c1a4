"""Build a Kaggle Dogs-vs-Cats-format fixture from real images that ship offline.

No cats-vs-dogs photos can be downloaded on machines without internet, so this writes
the same *format* from a real binary image task: scikit-image's ``lfw_subset`` (200
real grayscale photos, 25x25: 100 faces, 100 non-faces). Faces are named ``dog.N.jpg``
(the positive class, like P(dog) in the competition) and non-faces ``cat.N.jpg``.

Writes into OUT:
  train.zip               train/cat.N.jpg, train/dog.N.jpg   (labelled, 70%)
  test.zip                test/N.jpg                         (unlabeled, 30%, ids 1..n)
  sample_submission.csv   id,label  (label 0.5), the competition's sample layout
  test_labels.csv         id,label  the held-out truth (1 = dog), to score a submission

Usage: python cli/make_dvc_fixture.py OUT [--size 96] [--seed 0]
"""

from __future__ import annotations

import argparse
import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image


def jpeg_bytes(gray: np.ndarray, size: int) -> bytes:
    img = Image.fromarray((gray * 255).round().astype(np.uint8)).resize((size, size), Image.BICUBIC)
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", type=int, default=96, help="side of the written JPEGs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-fraction", type=float, default=0.3)
    args = parser.parse_args()

    try:
        from skimage.data import lfw_subset
    except ImportError:
        raise SystemExit("needs scikit-image: pip install scikit-image") from None

    images = lfw_subset()  # 100 faces, then 100 non-faces
    labels = np.array(["dog"] * 100 + ["cat"] * 100)
    order = np.random.default_rng(args.seed).permutation(len(images))
    n_test = int(round(len(images) * args.test_fraction))
    test_idx, train_idx = order[:n_test], order[n_test:]

    args.out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(args.out / "train.zip", "w") as z:
        counters = {"cat": 0, "dog": 0}
        for i in sorted(train_idx):
            counters[labels[i]] += 1
            z.writestr(
                f"train/{labels[i]}.{counters[labels[i]]}.jpg", jpeg_bytes(images[i], args.size)
            )
    truth = []
    with zipfile.ZipFile(args.out / "test.zip", "w") as z:
        for k, i in enumerate(test_idx, start=1):
            z.writestr(f"test/{k}.jpg", jpeg_bytes(images[i], args.size))
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
