"""``train --tensorboard DIR``: per-epoch scalars and the model graph as TensorBoard events.

TensorFlow only (``tf.summary`` writes the event files): the one module of the
training stage that uses ``tf.*`` directly. The scalars are written the way Keras's
own ``keras.callbacks.TensorBoard`` names them (``epoch_loss``, ``epoch_accuracy``,
``epoch_learning_rate`` under ``train/``; the val metrics under ``validation/``), so
TensorBoard draws train and val on one chart, with the epoch (0-based) as the step.

Why not Keras's callback: it reads the learning rate after the epoch (the schedule's
next value), and a resumed run would write the model summary at step 0 again. Here
the learning rate is the one the epoch trained with (history.csv's ``lr``), and a
resumed run appends to the same folders from its first epoch on: events a killed run
wrote for epochs it never checkpointed are dropped first, so no step appears twice.
The scalars are written as tensor summaries with the scalars plugin's metadata, which
needs no ``tensorboard`` package to write (only to view: ``pip install tensorboard``).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from imgkit.errors import BadInputError

TRAIN_DIR = "train"
VAL_DIR = "validation"


def run_log_dir(log_root: str | os.PathLike, output: str | os.PathLike) -> Path:
    """Where one run's events go: ``DIR/<bundle folder name>``, so runs sit side by side."""
    return Path(log_root) / Path(output).resolve().name


def tensorboard_callback(log_dir: str | os.PathLike):
    """A Keras callback writing the run's epochs to ``log_dir`` (train/, validation/).

    Raises:
        BadInputError: Keras runs on another backend (JAX): no tf.summary, no tf.function.
    """
    import keras

    backend = keras.config.backend()
    if backend != "tensorflow":  # the graph is traced with tf.function
        raise BadInputError(
            f"--tensorboard needs Keras's TensorFlow backend (this is {backend}; tf.summary "
            'writes the event files): pip install -e ".[cpu]" and set KERAS_BACKEND=tensorflow'
        )

    class EpochEvents(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.root, self.writers, self.lr = Path(log_dir), {}, None

        def on_epoch_begin(self, epoch, logs=None):
            if not self.writers:
                self._open(epoch)
            self.lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

        def _open(self, first_epoch: int) -> None:
            import tensorflow as tf

            for name in (TRAIN_DIR, VAL_DIR):
                drop_steps_from(self.root / name, first_epoch)
                self.writers[name] = tf.summary.create_file_writer(str(self.root / name))
            if first_epoch == 0:
                write_graph(self.writers[TRAIN_DIR], self.model)

        def on_epoch_end(self, epoch, logs=None):
            logs = {k: float(v) for k, v in (logs or {}).items()}
            train = {k: v for k, v in logs.items() if not k.startswith("val_")}
            if self.lr is not None:
                train["learning_rate"] = self.lr
            val = {k[4:]: v for k, v in logs.items() if k.startswith("val_")}
            for name, values in ((TRAIN_DIR, train), (VAL_DIR, val)):
                if values:
                    write_scalars(self.writers[name], values, epoch)

        def on_train_end(self, logs=None):
            for writer in self.writers.values():
                writer.close()
            self.writers = {}

    return EpochEvents()


def write_scalars(writer, values: dict[str, float], step: int) -> None:
    """``epoch_<name>`` scalars at ``step``, flushed (a killed run keeps what it wrote)."""
    import tensorflow as tf

    metadata = tf.compat.v1.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    with writer.as_default():
        for name, value in values.items():
            tf.summary.write(
                f"epoch_{name}", tf.constant(value, tf.float32), step=step, metadata=metadata
            )
    writer.flush()


def write_graph(writer, model) -> None:
    """The model's inference graph (TensorBoard's Graphs tab), traced once."""
    import tensorflow as tf

    spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)
    graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec).graph
    with writer.as_default():
        tf.summary.graph(graph)
    writer.flush()


def drop_steps_from(folder: Path, first_step: int) -> None:
    """Remove from ``folder``'s event files every summary at ``first_step`` or later.

    A run killed after logging an epoch but before its checkpoint was safe repeats
    that epoch on resume; without this, TensorBoard would show it twice.
    """
    import tensorflow as tf

    if first_step == 0 or not folder.is_dir():
        return
    for path in sorted(folder.glob("events.out.tfevents.*")):
        records = _intact_records(path)
        kept = [r for r in records if _before(r, first_step)]
        if len(kept) == len(records):
            continue
        tmp = path.with_name(path.name + ".part")
        with tf.io.TFRecordWriter(str(tmp)) as out:
            for record in kept:
                out.write(record)
        os.replace(tmp, path)


def _before(record: bytes, first_step: int) -> bool:
    """Whether an event stays: not a summary (the file header, the graph), or earlier."""
    import tensorflow as tf

    event = tf.compat.v1.Event()
    event.ParseFromString(record)
    return not event.HasField("summary") or event.step < first_step


def _intact_records(path: Path) -> list[bytes]:
    """The records of an event file up to the first one a kill cut short."""
    import tensorflow as tf

    records: list[bytes] = []
    # DataLossError: the last record was cut short; what came before it stands.
    with contextlib.suppress(tf.errors.DataLossError):
        for record in tf.data.TFRecordDataset(str(path)):
            records.append(bytes(record.numpy()))
    return records
