"""What the audit reads: the data set's images, ``--against`` images, ``--predictions``.

Each input problem stops the audit with one line naming the file: an ``--against``
folder with no image, a predictions CSV whose paths are not the data set's images or
whose classes are not its classes. Unreadable images do not stop it (they go to
rejects.csv).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgkit.data.dataset import MANIFEST, Dataset
from imgkit.data.images import is_skipped, list_images
from imgkit.errors import BadInputError


@dataclass
class ImageSet:
    """Images to audit: paths to open, names to report, splits, labels.

    ``dataset`` is set when they come from a dataset folder (its cache is used).
    """

    paths: list[Path]
    names: list[str]
    splits: list[str]
    labels: list[str]
    dataset: Dataset | None = None
    rejects: list[tuple[str, str]] = field(default_factory=list)


def data_images(ds: Dataset) -> ImageSet:
    """A dataset's images in manifest order (names as the manifest writes them)."""
    m = ds.manifest
    return ImageSet(
        [ds.abspath(p) for p in m["path"]], list(m["path"]), list(m["split"]), list(m["label"]), ds
    )


def against_images(source: str | os.PathLike) -> ImageSet:
    """``--against``: a dataset folder, a folder of images, or one image.

    Its split is ``against`` for every image. Raises BadInputError when it holds no image.
    """
    source = Path(source)
    if (source / MANIFEST).is_file():
        ds = Dataset.load(source)
        paths = [ds.abspath(p) for p in ds.manifest["path"]]
        rejects: list[tuple[str, str]] = []
    else:
        paths, found = list_images(source)
        rejects = [(r.path, r.reason) for r in found if not is_skipped(r.reason)]
        ds = None
    if not paths:
        raise BadInputError(f"{source}: --against holds no image")
    names = [p.as_posix() for p in paths]
    n = len(paths)
    return ImageSet(paths, names, ["against"] * n, [""] * n, ds, rejects)


def _keys(path: str, base: Path | None = None) -> list[str]:
    full = Path(base, path) if base is not None else Path(path)
    return [os.path.realpath(full), os.path.normpath(path).replace("\\", "/")]


def align_predictions(
    source: str | os.PathLike, data: ImageSet, classes: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted probabilities for the data set's images, in its order.

    Paths are matched as files (relative to the current folder, or to the data set)
    and as written in the manifest.

    Returns:
        (rows (m,) indices into ``data``, probabilities (m, k) in ``classes`` order).

    Raises:
        BadInputError: unreadable; p_ columns that are not the data set's classes; a
            path that is not one of its images; no labelled image predicted.
    """
    from imgkit.evaluate.matching import prob_columns, read_predictions

    df = read_predictions(source)
    got = sorted(c[2:] for c in prob_columns(df))
    if got != sorted(classes):
        raise BadInputError(
            f"{source}: its classes {got} are not the data set's {sorted(classes)} "
            "(predictions need a p_<class> column for each)"
        )
    index: dict[str, int] = {}
    root = data.dataset.root if data.dataset is not None else Path.cwd()
    for i, name in enumerate(data.names):
        for key in _keys(name, root):
            index.setdefault(key, i)
    rows, unknown = [], []
    for path in df["path"]:
        hit = next((index[k] for k in (*_keys(path), *_keys(path, root)) if k in index), None)
        (unknown if hit is None else rows).append(path if hit is None else hit)
    if unknown:
        raise BadInputError(
            f"{source}: {len(unknown)} of its paths are not images of the data set "
            f"(first: {unknown[0]})"
        )
    try:
        proba = df[[f"p_{c}" for c in classes]].astype(np.float64).to_numpy()
    except ValueError as e:
        raise BadInputError(f"{source}: a p_ column holds something not a number ({e})") from e
    keep = np.array([data.labels[r] in classes for r in rows], bool)
    if not keep.any():
        raise BadInputError(f"{source}: predicts none of the data set's labelled images")
    return np.array(rows, np.int64)[keep], proba[keep]
