"""Two Keras 3 bugs that break ``fit`` under a tf.distribute strategy, mended while a run uses one.

In Keras 3.15's TensorFlow trainer (``keras/src/backend/tensorflow/trainer.py``):

1. Before fitting or evaluating, ``_maybe_symbolic_build`` takes the first batch and
   averages it across the devices (``strategy.reduce("MEAN", batch)``) only to learn its
   shapes. That fails when the devices' shares of the batch differ in size ("Inputs to
   operation AddN ... must have the same size and shape", keras-team/keras#19246), which
   any batch that does not split evenly gives (often the short one, which comes first),
   and always under MultiWorkerMirroredStrategy ("Attempt to convert a value
   (PerReplica...)", keras-team/keras#20585). The mend reads the shapes from the first
   device's share instead: shapes are all the build needs.
2. Under MultiWorkerMirroredStrategy each step's logs (loss, metrics: scalars) are
   averaged across the workers with ``strategy.reduce("MEAN", value, axis=0)``, which
   fails on a scalar ("Invalid reduction dimension 0 for input with 0 dimensions",
   tensorflow/tensorflow#72388). The mend averages them with ``axis=None``: the same
   mean over the devices that MirroredStrategy takes on one machine.

Both were reproduced on Keras 3.15.1 / TF 2.21 with a plain ``Sequential`` model and
are patched only for the duration of :func:`mended`, then put back. With a Keras that no
longer has the patched names, nothing is changed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def mended(strategy) -> Iterator[None]:
    """Fit and evaluate under ``strategy`` (a tf.distribute strategy, or None) with the mends."""
    found = _keras_parts() if strategy is not None else None
    if found is None:
        yield
        return
    tree, module, trainer_class = found
    build = trainer_class._maybe_symbolic_build
    reduce = module.reduce_per_replica
    multi_worker = module._collective_all_reduce_multi_worker

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        if iterator is not None and self._distribute_strategy is not None:
            local = self.distribute_strategy.experimental_local_results
            for _, _, batches in iterator:
                data_batch = tree.map_structure(lambda v: local(v)[0], next(batches))
                break
            iterator = None
        return build(self, iterator=iterator, data_batch=data_batch)

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and multi_worker(strategy):
            return tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return reduce(values, strategy, reduction)

    trainer_class._maybe_symbolic_build = maybe_symbolic_build
    module.reduce_per_replica = reduce_per_replica
    try:
        yield
    finally:
        trainer_class._maybe_symbolic_build = build
        module.reduce_per_replica = reduce


def _keras_parts():
    """(keras tree, the TF trainer module, its trainer class), or None if they moved."""
    try:
        from keras.src import tree
        from keras.src.backend.tensorflow import trainer as module
    except ImportError:
        return None
    trainer_class = getattr(module, "TensorFlowTrainer", None)
    names = ("reduce_per_replica", "_collective_all_reduce_multi_worker")
    if trainer_class is None or not hasattr(trainer_class, "_maybe_symbolic_build"):
        return None
    if not all(hasattr(module, name) for name in names):
        return None
    return tree, module, trainer_class
