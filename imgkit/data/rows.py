"""Some rows of a cached split, read on demand: a fold's images without a copy.

A fold's train and val images are rows of the dataset's one cached (memory-mapped)
train split. :class:`Rows` holds that map and the row numbers, and reads rows only
when indexed, as the training loop's batches, ``predict`` and scoring do: memory
stays what one batch needs however many images the dataset holds. Turning it into an
array (``np.asarray``) reads every row, which the trainer does on purpose for splits
small enough to keep in RAM, as it does with a whole split's map.
"""

from __future__ import annotations

import numpy as np


class Rows:
    """Rows ``positions`` of ``base`` (an array or memory map) as a read-only array-like.

    Indexing works on the first axis as on an array (an integer, a slice, an integer
    or boolean array, with more axes after it); the result is a new array holding only
    the rows asked for.
    """

    def __init__(self, base, positions):
        self.base = base
        self.positions = np.asarray(positions, dtype=np.int64)
        self.shape = (len(self.positions), *base.shape[1:])
        self.dtype = base.dtype
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __getitem__(self, key):
        first, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        if first is Ellipsis:
            return np.asarray(self)[key]
        picked = self.base[self.positions[first]]
        if np.ndim(self.positions[first]) == 0:  # one row: its own axes follow
            return np.asarray(picked[rest]) if rest else np.asarray(picked)
        return np.asarray(picked[(slice(None), *rest)]) if rest else picked

    def __array__(self, dtype=None, copy=None):
        out = self.base[self.positions]
        return out if dtype is None else out.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"Rows({len(self)} of {len(self.base)}, shape={self.shape}, dtype={self.dtype})"
