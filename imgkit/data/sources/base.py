"""What every source reader takes and returns, and helpers they share."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgkit.data.records import Record, Reject

# progress(task, advance, total): ``advance`` more items of ``total`` are done.
Progress = Callable[[str, int, int], None]


@dataclass
class SourceContext:
    """Settings shared by every source of one ``imgkit prep`` run.

    Attributes:
        workdir: the dataset folder being built (temporary); readers that extract or
            convert write their images below it and record paths relative to it.
        idx_dir: where the user said IDX files are (``--idx-dir``), or None.
        limit: keep at most this many images per split of a source (None: all).
        seed: the run's random seed (subsets).
        progress: progress callback, or None.
        name_labels: label a folder by Kaggle-style file names (``cat.12.jpg``): None
            decides from the names, True whenever any name fits, False never (see
            :mod:`imgkit.data.sources.kaggle_names`).
        label_sep: what separates a multi-label CSV's labels (``--label-sep``).
        images: the folder a multi-label CSV's names are in (``--images``), or None.
        allow_empty: keep a multi-label CSV's rows with no label (``--allow-empty``)
            as images with none, rather than rejecting them.
    """

    workdir: Path
    idx_dir: Path | None = None
    limit: int | None = None
    seed: int = 0
    progress: Progress | None = None
    name_labels: bool | None = None
    label_sep: str = " "
    images: Path | None = None
    allow_empty: bool = False
    _image_dirs: set[str] = field(default_factory=set, init=False, repr=False)

    def image_dir(self, name: str = "images") -> Path:
        """A new folder below ``workdir`` for one source's images (unique per run)."""
        candidate, k = name, 2
        while candidate in self._image_dirs:
            candidate, k = f"{name}-{k}", k + 1
        self._image_dirs.add(candidate)
        folder = self.workdir / candidate
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def report(self, task: str, advance: int, total: int) -> None:
        if self.progress is not None:
            self.progress(task, advance, total)


@dataclass
class SourceResult:
    """What one source contributed.

    Attributes:
        records: the images taken (paths absolute, or relative to ``workdir``).
        rejects: the files not taken, with reasons.
        trusted: True when prep wrote every image itself (no need to re-check them).
        arrays: decoded pixels by record path, (h, w, c) uint8, to fill the dataset
            cache without decoding the files again; None when not available.
        description: how the source was read, for dataset.json.
        warnings: things the user should know (a guess not made, and how to make it).
        task: "multilabel" for a source whose records carry label sets, else None.
    """

    records: list[Record]
    rejects: list[Reject] = field(default_factory=list)
    trusted: bool = False
    arrays: dict[str, np.ndarray] | None = None
    description: str = ""
    warnings: list[str] = field(default_factory=list)
    task: str | None = None


def absolute(path: str | os.PathLike) -> str:
    """An absolute path with its folders resolved but a linked file itself kept.

    The dataset folder is resolved when paths are written relative to it, so the
    folders must be too; the file keeps its own name for the user to recognise.
    """
    p = Path(path)
    return (Path(os.path.realpath(p.parent)) / p.name).as_posix()


def stratified_subset(labels: Sequence, limit: int | None, seed: int) -> list[int]:
    """Choose at most ``limit`` items keeping each label's share, reproducibly.

    Args:
        labels: one label per item (None counts as its own label).
        limit: how many to keep; None or at least ``len(labels)`` keeps all.
        seed: random seed.

    Returns:
        Sorted indices of the items kept.
    """
    n = len(labels)
    if limit is None or limit >= n:
        return list(range(n))
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_label[str(label)].append(i)
    names = sorted(by_label)
    # Largest-remainder rounding so the shares add up to exactly ``limit``.
    exact = [limit * len(by_label[k]) / n for k in names]
    take = [int(x) for x in exact]
    order = sorted(range(len(names)), key=lambda j: (-(exact[j] - take[j]), names[j]))
    for j in order[: limit - sum(take)]:
        take[j] += 1
    rng = np.random.default_rng(seed)
    kept: list[int] = []
    for name, count in zip(names, take, strict=True):
        members = by_label[name]
        kept.extend(members[i] for i in rng.permutation(len(members))[:count])
    return sorted(kept)
