"""The data ``fit`` sees: every epoch's batches, drawn from (seed, epoch) alone.

A run is one ``model.fit`` call over :func:`epoch_batches`, an endless
``keras.utils.PyDataset`` whose i-th batch is batch ``i % steps`` of epoch
``first_epoch + i // steps``. Nothing about it depends on what ran before, so a run
resumed at epoch k draws exactly the batches an uninterrupted one would have, and no
epoch copies the arrays: each batch gathers its own rows (memory-mapped or in RAM).

Why endless rather than one pass per epoch: Keras makes the next epoch's iterator as
soon as the last batch of an epoch is taken, before any callback runs, and tf.data
starts prefetching from it; a dataset told "a new epoch began" by a callback would
already have served batches under the old epoch's order. Indexing by the global batch
number needs no such signal.
"""

from __future__ import annotations

import threading

import numpy as np


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order epoch ``epoch`` visits ``n`` samples in."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def epoch_flips(seed: int, epoch: int, n: int, dihedral: bool = False) -> np.ndarray:
    """Segmentation: how each image+mask pair is turned in epoch ``epoch``.

    Mirrors only: a bool per pair (mirrored or not). ``dihedral``: a code 0-7 per pair,
    one of the square's eight symmetries (see :func:`mirror_pairs`).
    """
    if dihedral:
        return np.random.default_rng([seed, epoch, 2]).integers(0, 8, n)
    return np.random.default_rng([seed, epoch, 1]).random(n) < 0.5


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """Where each batch of an epoch starts and ends in its order.

    The short batch (``n % batch_size``) comes first: Keras fixes the batch dimension
    of a PyDataset from its first two batches, so a short batch seen there keeps the
    dimension open, where a short last batch would not fit it.
    """
    short = n % batch_size
    bounds = [(0, short)] if short and n > batch_size else []
    start = short if bounds else 0
    while start < n:
        bounds.append((start, min(start + batch_size, n)))
        start += batch_size
    return bounds


def mirror_pairs(x: np.ndarray, y: np.ndarray, which: np.ndarray) -> None:
    """Turn, in place, images ``x`` and their masks ``y`` together, as ``which`` says.

    A bool per pair mirrors left-right. A code 0-7 per pair (square images) is a
    symmetry of the square: bit 1 mirrors left-right, bit 2 top-bottom, bit 4 swaps
    rows and columns; nuclei, cells and tissue have no up or left, so all eight are
    as real as the original.
    """
    if which.dtype == bool:
        if which.any():
            x[which] = x[which][:, :, ::-1]
            y[which] = y[which][:, :, ::-1]
        return
    for code in range(1, 8):
        sel = which == code
        if not sel.any():
            continue
        for arr in (x, y):
            part = arr[sel]
            if code & 1:
                part = part[:, :, ::-1]
            if code & 2:
                part = part[:, ::-1]
            if code & 4:
                part = np.swapaxes(part, 1, 2)
            arr[sel] = part


def epoch_batches(
    x, y, batch_size: int, seed: int, first_epoch: int, weights=None, flip_pairs: bool = False
):
    """An endless PyDataset of training batches from ``first_epoch`` on.

    Args:
        x: images (n, h, w, c), an array or a memory map.
        y: targets, one row per image.
        batch_size: images per batch.
        seed: the run's seed; epoch e's order is :func:`epoch_order` (seed, e).
        first_epoch: the 0-based epoch that global batch 0 belongs to.
        weights: per-sample weights, or None.
        flip_pairs: segmentation: mirror image and mask together (:func:`epoch_flips`);
            "dihedral" (square images): any of the square's eight symmetries.

    Returns:
        A ``keras.utils.PyDataset``; ``.steps`` is the number of batches per epoch.
        Batches are (x, y) or (x, y, weights).
    """
    import keras

    n = len(x)
    bounds = batch_bounds(n, batch_size)

    class EpochBatches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.steps = len(bounds)
            self._epochs: dict[int, tuple] = {}
            self._lock = threading.Lock()

        @property
        def num_batches(self):
            return None  # endless: fit's steps_per_epoch cuts it into epochs

        def _epoch(self, epoch: int) -> tuple:
            with self._lock:
                if epoch not in self._epochs:
                    dihedral = flip_pairs == "dihedral"
                    flips = epoch_flips(seed, epoch, n, dihedral) if flip_pairs else None
                    self._epochs[epoch] = (epoch_order(seed, epoch, n), flips)
                    for old in [e for e in self._epochs if e < epoch - 1]:
                        del self._epochs[old]
                return self._epochs[epoch]

        def __getitem__(self, i):
            epoch, step = first_epoch + i // self.steps, i % self.steps
            order, flips = self._epoch(epoch)
            start, end = bounds[step]
            # Sorted within the batch: a memory map is read front to back.
            idx = np.sort(order[start:end])
            bx, by = np.asarray(x[idx]), np.asarray(y[idx])
            if flips is not None:
                bx, by = bx.copy(), by.copy()
                mirror_pairs(bx, by, flips[idx])
            if weights is None:
                return bx, by
            return bx, by, np.asarray(weights[idx])

    return EpochBatches()


def in_order(x, y=None, batch_size: int = 32):
    """A finite PyDataset over ``x`` (and ``y``) in order: validation and prediction.

    Batches follow :func:`batch_bounds` (the short one first), so the outputs of
    ``predict`` over it are still in ``x``'s order.
    """
    import keras

    bounds = batch_bounds(len(x), batch_size)

    class InOrder(keras.utils.PyDataset):
        def __len__(self):
            return len(bounds)

        def __getitem__(self, i):
            part = slice(*bounds[i])
            if y is None:
                return (np.asarray(x[part]),)
            return np.asarray(x[part]), np.asarray(y[part])

    return InOrder()
