"""How ``imgkit prep`` makes a dataset: one frozen value for all of its options.

The command builds a :class:`PrepOptions` from its click options and
:func:`imgkit.data.prep.prepare` takes it whole, so a new option is added here, in one
place, and reaches every step that reads it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from imgkit.data.images import DEFAULT_MAX_PIXELS

# The shares of the labelled images that go to val and to test when not asked for.
DEFAULT_VAL = 0.1
DEFAULT_TEST = 0.1


@dataclass(frozen=True)
class PrepOptions:
    """The options of one prep run; the defaults are ``imgkit prep``'s.

    Attributes:
        val: fraction for validation; None: 0.1, or 0 when a source fixes val.
        test: fraction for test; None: 0.1, or 0 when a source has its own test set.
        seed: seed for the splits, the folds and ``limit``'s subsets.
        max_bad: stop when more inputs than this are unreadable: a count (10) or a
            fraction (0.05); hidden files and non-image files do not count. None: never.
        overwrite: replace an existing dataset folder (only once the new one is done).
        idx_dir: where the fashion-mnist IDX files are.
        limit: at most this many images per split of the sources, stratified by class.
        max_pixels: images with more pixels are rejected as possible decompression bombs.
        name_labels: label folders by Kaggle-style file names (``cat.12.jpg``): None
            decides from the names, True whenever any name fits, False never (see
            :mod:`imgkit.data.sources.kaggle_names`).
        masks: a folder of masks matched to the images by file stem, or a CSV with
            path,mask columns: makes a segmentation dataset (see :mod:`imgkit.data.segprep`).
        mask_classes: with ``masks``, a file naming the classes of multi-class masks,
            one per line for the values 0..C (the background first).
        mask_colors: with ``masks``, a file of lines ``NAME R G B`` mapping RGB mask
            colours to the classes 0..C (see :mod:`imgkit.data.classfiles`).
        mask_ignore: with a class file, a mask value (above C) of pixels to ignore.
        group_by: a regular expression searched in each image's path relative to its
            source; its first group (or the whole match) is the image's group, kept in
            one split. Images it does not match are groups of their own (counted in a
            warning). See :mod:`imgkit.data.grouping`.
        label_sep: what separates a multi-label CSV's labels (a space when empty).
        images: the folder a Planet-style multi-label CSV's image names are in.
        folds: give every labelled image but the test split a cross-validation fold
            1..K (stratified, groups whole; :mod:`imgkit.data.folds`) in place of a val
            split; the test split is then 0 unless ``test`` asks for one.
        allow_empty: keep a multi-label CSV's rows with no label, as images with none.
    """

    val: float | None = None
    test: float | None = None
    seed: int = 0
    max_bad: str | int | float | None = None
    overwrite: bool = False
    idx_dir: str | os.PathLike | None = None
    limit: int | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    name_labels: bool | None = None
    masks: str | os.PathLike | None = None
    mask_classes: str | os.PathLike | None = None
    mask_colors: str | os.PathLike | None = None
    mask_ignore: int | None = None
    group_by: str | None = None
    label_sep: str = " "
    images: str | os.PathLike | None = None
    folds: int | None = None
    allow_empty: bool = False
