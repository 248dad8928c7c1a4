"""Dataset folders: the manifest, splits, and the decode-once image cache.

A dataset is a folder made by ``imgkit prep``::

    manifest.csv   path,label,split[,group][,mask][,fold][,pseudo]   (paths relative to
                   the folder; fold 1..K with ``prep --folds``, pseudo 1 for pseudo-labels)
    dataset.json   task, classes (sorted), counts per split and class, source, seed

A multi-label dataset (task ``multilabel``) has each image's labels in ``label``,
separated by single spaces; its counts are per label (an image counts once for each
of its labels).
    rejects.csv    path,reason for every input file that was not taken
    images/        only when prep had to extract or convert (archives, IDX arrays)
    .cache/        decoded, resized uint8 arrays (memory-mapped), made on first use
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from imgkit import __version__
from imgkit.data.records import Record, Reject
from imgkit.errors import BadDatasetError, BadImageError
from imgkit.fileio import atomic_path, write_csv, write_text

MANIFEST = "manifest.csv"
INFO = "dataset.json"
REJECTS = "rejects.csv"
CACHE_DIR = ".cache"
SPLITS = ("train", "val", "test", "unlabeled")
LABEL_SEP = " "  # between a multi-label image's labels in manifest.csv


def label_set(label: str | None) -> list[str]:
    """A multi-label manifest entry's labels, in order (none for an empty entry)."""
    return [part for part in (label or "").split(LABEL_SEP) if part]


def fixed_splits(labels: Sequence, val: float, test: float, fixed) -> list[str | None]:
    """The splits decided before any drawing: ``fixed`` ones, and "unlabeled" for an item
    without a label (None); None for the items left to split. Checks the fractions."""
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise BadDatasetError(
            f"--val {val} and --test {test} must be fractions with val + test < 1"
        )
    out: list[str | None] = list(fixed) if fixed is not None else [None] * len(labels)
    for i, label in enumerate(labels):
        if out[i] is None and label is None:
            out[i] = "unlabeled"
    return out


def assign_splits(
    labels: Sequence[str | None],
    val: float,
    test: float,
    seed: int,
    groups: Sequence[str | None] | None = None,
    fixed: Sequence[str | None] | None = None,
) -> list[str]:
    """Assign train/val/test to each item, stratified by label and kept whole by group.

    Items with a ``fixed`` split keep it; unlabeled items go to ``unlabeled``. The rest
    are split per class (so each split keeps the class balance); when ``groups`` are
    given, whole groups are assigned, stratified by each group's majority label, and
    a group never spans two splits.

    Args:
        labels: class name per item (None for unlabeled).
        val: fraction for validation, 0 <= val < 1.
        test: fraction for test, 0 <= test < 1, val + test < 1.
        seed: random seed; the same inputs and seed give the same splits.
        groups: group id per item, or None.
        fixed: a split already decided per item, or None.

    Returns:
        The split name per item.
    """
    out = fixed_splits(labels, val, test, fixed)
    n = len(labels)
    free = [i for i in range(n) if out[i] is None]
    rng = np.random.default_rng(seed)

    # Units to split: single items, or whole groups labelled by their majority class.
    if groups is not None:
        members: dict[str, list[int]] = defaultdict(list)
        for i in free:
            members[str(groups[i])].append(i)
        units = [
            (Counter(labels[i] for i in idx).most_common(1)[0][0], idx)
            for _, idx in sorted(members.items())
        ]
    else:
        units = [(labels[i], [i]) for i in free]

    by_class: dict[str, list[list[int]]] = defaultdict(list)
    for label, idx in units:
        by_class[str(label)].append(idx)
    for label in sorted(by_class):
        class_units = by_class[label]
        order = rng.permutation(len(class_units))
        total = sum(len(u) for u in class_units)
        want_test, want_val = test * total, val * total
        got_test = got_val = 0
        for k in order:
            unit = class_units[k]
            # Fill test, then val, each up to the nearest count to its fraction.
            if got_test + len(unit) / 2 <= want_test:
                split, got_test = "test", got_test + len(unit)
            elif got_val + len(unit) / 2 <= want_val:
                split, got_val = "val", got_val + len(unit)
            else:
                split = "train"
            for i in unit:
                out[i] = split
    return [s or "train" for s in out]


def _relative(path: str, root: Path) -> str:
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    try:
        return Path(os.path.relpath(p, root.resolve())).as_posix()
    except ValueError:  # another drive on Windows: keep it absolute
        return p.as_posix()


def write_dataset(
    folder: str | os.PathLike,
    records: Iterable[Record],
    rejects: Iterable[Reject],
    *,
    task: str = "classification",
    source: str | list[str] = "",
    seed: int = 0,
    final_folder: str | os.PathLike | None = None,
    extra: dict | None = None,
) -> dict:
    """Write manifest.csv, dataset.json and rejects.csv into ``folder``.

    Args:
        folder: where to write (possibly a temporary folder renamed later).
        records: the images taken, with their splits assigned.
        rejects: the inputs not taken.
        task: "classification", "multilabel" or "segmentation".
        source: what prep read, for the record.
        seed: the seed used for the splits.
        final_folder: the folder's final location, if ``folder`` is temporary; absolute
            record paths are written relative to it.
        extra: more keys for dataset.json.

    Returns:
        The dataset.json content.
    """
    folder = Path(folder)
    root = Path(final_folder) if final_folder is not None else folder
    records = list(records)
    rows = []
    for r in records:
        row = {"path": _relative(r.path, root), "label": r.label or "", "split": r.split}
        if r.group is not None:
            row["group"] = r.group
        if r.mask is not None:
            row["mask"] = _relative(r.mask, root)
        row["fold"] = str(r.fold) if r.fold is not None else ""
        row["pseudo"] = "1" if r.pseudo else ""
        rows.append(row)
    columns = ["path", "label", "split"]
    for name, present in (
        ("group", any(r.group is not None for r in records)),
        ("mask", any(r.mask is not None for r in records)),
        ("fold", any(r.fold is not None for r in records)),
        ("pseudo", any(r.pseudo for r in records)),
    ):
        if present:
            columns.append(name)
    manifest = pd.DataFrame(rows, columns=columns)

    def names(r: Record) -> list[str]:
        if task == "multilabel":
            # An image with no label (--allow-empty) counts for none; unlabeled ones
            # count under "" as in any dataset.
            return label_set(r.label) or ([""] if r.label is None else [])
        return [r.label or ""]

    def tally(part: list[Record]) -> dict[str, int]:
        c = Counter(name for r in part for name in names(r))
        return {k: c[k] for k in sorted(c)}

    classes = sorted({name for r in records for name in names(r) if name})
    counts = {s: tally(p) for s in SPLITS if (p := [r for r in records if r.split == s])}
    info = {
        "task": task,
        "classes": classes,
        "counts": counts,
        "images": len(records),
        "rejected": 0,
        "source": source,
        "seed": seed,
        "created_by": f"imgkit {__version__}",
    }
    folds = sorted({r.fold for r in records if r.fold is not None})
    if folds:
        info["folds"] = len(folds)
        # Per label for multi-label data, as ``counts``: what the folds stratify.
        info["fold_counts"] = {str(k): tally([r for r in records if r.fold == k]) for k in folds}
    if any(r.pseudo for r in records):
        info["pseudo"] = sum(1 for r in records if r.pseudo)
    if extra:
        info.update(extra)
    rejects_df = pd.DataFrame([(r.path, r.reason) for r in rejects], columns=["path", "reason"])
    info["rejected"] = len(rejects_df)
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(manifest, folder / MANIFEST)
    write_csv(rejects_df, folder / REJECTS)
    write_text(folder / INFO, json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    return info


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
