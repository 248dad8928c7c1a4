"""Dataset folders: reading the manifest, its splits, and the decode-once image cache.

A dataset is a folder made by ``imgkit prep``::

    manifest.csv   path,label,split[,group][,mask][,fold][,pseudo]   (paths relative to
                   the folder; fold 1..K with ``prep --folds``, pseudo 1 for pseudo-labels)
    dataset.json   task, classes (sorted), counts per split and class, source, seed
    rejects.csv    path,reason for every input file that was not taken
    images/        only when prep had to extract or convert (archives, IDX arrays)
    .cache/        decoded, resized uint8 arrays (memory-mapped), made on first use

A multi-label dataset (task ``multilabel``) has each image's labels in ``label``,
separated by single spaces; its counts are per label (an image counts once for each
of its labels).

The files are written by :func:`imgkit.data.dataset_write.write_dataset`; the splits
are drawn by :mod:`imgkit.data.splits`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from imgkit.errors import BadDatasetError, BadImageError
from imgkit.fileio import atomic_path

MANIFEST = "manifest.csv"
INFO = "dataset.json"
REJECTS = "rejects.csv"
CACHE_DIR = ".cache"
SPLITS = ("train", "val", "test", "unlabeled")
LABEL_SEP = " "  # between a multi-label image's labels in manifest.csv


def label_set(label: str | None) -> list[str]:
    """A multi-label manifest entry's labels, in order (none for an empty entry)."""
    return [part for part in (label or "").split(LABEL_SEP) if part]


class Dataset:
    """A dataset folder made by ``imgkit prep``, read-only apart from its cache."""

    def __init__(self, root: Path, manifest: pd.DataFrame, info: dict):
        self.root = root
        self.manifest = manifest
        self.info = info

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Dataset:
        """Open a dataset folder; raise BadDatasetError if it is not one."""
        root = Path(folder)
        if not root.is_dir():
            raise BadDatasetError(f"{root}: no such dataset folder (make one with `imgkit prep`)")
        mpath, ipath = root / MANIFEST, root / INFO
        if not mpath.is_file() or not ipath.is_file():
            raise BadDatasetError(
                f"{root}: not a dataset folder (no {MANIFEST} or {INFO}; "
                "make one with `imgkit prep`)"
            )
        try:
            manifest = pd.read_csv(mpath, dtype=str, keep_default_na=False, encoding="utf-8-sig")
            info = json.loads(ipath.read_text(encoding="utf-8"))
        except (ValueError, OSError) as e:
            raise BadDatasetError(f"{root}: cannot read the dataset ({e})") from e
        # What .task and .classes return must be what every consumer expects.
        if not isinstance(info, dict):
            raise BadDatasetError(f"{ipath}: not a JSON object")
        classes = info.get("classes", [])
        if not isinstance(info.get("task", ""), str) or not (
            isinstance(classes, list) and all(isinstance(c, str) for c in classes)
        ):
            raise BadDatasetError(
                f"{ipath}: damaged ('task' must be a name and 'classes' a list of names)"
            )
        missing = {"path", "label", "split"} - set(manifest.columns)
        if missing:
            raise BadDatasetError(f"{mpath}: missing columns {sorted(missing)}")
        return cls(root, manifest, info)

    @property
    def task(self) -> str:
        return self.info.get("task", "classification")

    @property
    def classes(self) -> list[str]:
        return list(self.info.get("classes", []))

    @property
    def mask_classes(self) -> list[str]:
        """Multi-class masks' class names for the values 0..C; [] for binary masks."""
        return [str(n) for n in self.info.get("mask_classes") or []]

    @property
    def hash(self) -> str:
        """A short content hash of the manifest, recorded in bundles and cache names."""
        return hashlib.sha256((self.root / MANIFEST).read_bytes()).hexdigest()[:16]

    def splits(self) -> list[str]:
        """Split names that have at least one image, in the standard order."""
        present = set(self.manifest["split"])
        return [s for s in SPLITS if s in present]

    def rows(self, split: str) -> pd.DataFrame:
        """The manifest rows of one split (raises if the split is empty)."""
        part = self.manifest[self.manifest["split"] == split]
        if part.empty:
            have = ", ".join(self.splits()) or "none"
            raise BadDatasetError(f"{self.root}: split {split!r} is empty (splits here: {have})")
        return part

    def abspath(self, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else self.root / p

    def paths(self, split: str) -> list[Path]:
        return [self.abspath(p) for p in self.rows(split)["path"]]

    def labels(self, split: str) -> np.ndarray:
        """Class indices (into ``classes``) of one split's images."""
        index = {c: i for i, c in enumerate(self.classes)}
        labels = self.rows(split)["label"]
        unknown = sorted(set(labels) - set(index))
        if unknown:
            raise BadDatasetError(
                f"{self.root}: split {split!r} has unlabeled or unknown labels {unknown[:5]}"
            )
        return np.array([index[v] for v in labels], dtype=np.int64)

    def label_matrix(self, split: str) -> np.ndarray:
        """A multi-label split's labels: (n, classes) 0/1 float32, columns in class order."""
        index = {c: i for i, c in enumerate(self.classes)}
        rows = self.rows(split)["label"]
        out = np.zeros((len(rows), len(index)), dtype=np.float32)
        for r, entry in enumerate(rows):
            for name in label_set(entry):
                if name not in index:
                    raise BadDatasetError(
                        f"{self.root}: split {split!r} has a label {name!r} not in dataset.json"
                    )
                out[r, index[name]] = 1.0
        return out

    # --- the decode-once cache ------------------------------------------------------

    def cache_file(
        self, split: str, size: tuple[int, int], channels: int, resize: str = "stretch"
    ) -> Path:
        h, w = size
        name = f"{split}-{h}x{w}x{channels}-{resize}-{self.hash}.npy"
        return self.root / CACHE_DIR / name

    def arrays(
        self,
        split: str,
        size: tuple[int, int],
        channels: int,
        resize: str = "stretch",
        progress: Callable[[int], None] | None = None,
        workers: int | None = None,
    ) -> np.ndarray:
        """Return one split's images as a read-only memory-mapped uint8 array.

        The first call decodes every image once (in parallel threads) into
        ``.cache/``; later calls, later epochs and later commands map that file.

        Args:
            split: train, val, test or unlabeled.
            size: (height, width).
            channels: 1 (grayscale) or 3 (RGB).
            resize: how images are fitted to ``size`` ("stretch", "pad" or "crop").
            progress: called with the number of images decoded since the last call.
            workers: decoding threads (default: the number of CPUs).

        Returns:
            Array of shape (n, height, width, channels).
        """
        path = self.cache_file(split, size, channels, resize)
        if path.is_file():
            return np.load(path, mmap_mode="r")
        from imgkit.data.images import load_array

        files = self.paths(split)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            out = np.lib.format.open_memmap(
                tmp, mode="w+", dtype=np.uint8, shape=(len(files), *size, channels)
            )

            def decode(i_file):
                i, f = i_file
                try:
                    out[i] = load_array(f, size, channels, resize)
                except BadImageError as e:
                    raise BadDatasetError(
                        f"{f}: {e.reason} (it was readable when the dataset was made)"
                    ) from e
                except FileNotFoundError as e:
                    raise BadDatasetError(f"{f}: file is gone since the dataset was made") from e
                return 1

            with ThreadPoolExecutor(workers or os.cpu_count() or 2) as pool:
                for n in pool.map(decode, enumerate(files)):
                    if progress:
                        progress(n)
            out.flush()
        return np.load(path, mmap_mode="r")

    def store_arrays(self, split: str, array: np.ndarray, resize: str = "stretch") -> Path:
        """Fill the cache for one split from arrays already decoded (IDX sources)."""
        n, h, w, c = array.shape
        path = self.cache_file(split, (h, w), c, resize)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            np.save(tmp, np.ascontiguousarray(array, dtype=np.uint8))
        return path

    # --- segmentation masks ---------------------------------------------------------

    def mask_paths(self, split: str) -> list[Path]:
        """The mask files of one split's images (segmentation datasets)."""
        rows = self.rows(split)
        if "mask" not in rows.columns or (rows["mask"] == "").any():
            raise BadDatasetError(f"{self.root}: split {split!r} has images without a mask")
        return [self.abspath(p) for p in rows["mask"]]

    def mask_arrays(
        self, split: str, size: tuple[int, int], workers: int | None = None
    ) -> np.ndarray:
        """One split's masks, memory-mapped read-only uint8 (n, h, w, 1): 0/1 or class values.

        Like :meth:`arrays`, decoded once into ``.cache/``; masks are resized by nearest
        neighbour, so an edge is never blurred into values between 0 and 1.
        """
        from imgkit.data.classmasks import mask_loader

        load, (h, w) = mask_loader(len(self.mask_classes)), size
        path = self.root / CACHE_DIR / f"{split}-{h}x{w}-mask-{self.hash}.npy"
        if path.is_file():
            return np.load(path, mmap_mode="r")
        files = self.mask_paths(split)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            out = np.lib.format.open_memmap(
                tmp, mode="w+", dtype=np.uint8, shape=(len(files), h, w, 1)
            )

            def decode(i_file):
                i, f = i_file
                try:
                    out[i] = load(f, size)
                except (BadImageError, FileNotFoundError) as e:
                    raise BadDatasetError(f"{f}: mask unusable since the dataset was made") from e

            with ThreadPoolExecutor(workers or os.cpu_count() or 2) as pool:
                list(pool.map(decode, enumerate(files)))
            out.flush()
        return np.load(path, mmap_mode="r")
