"""Training on several devices of one machine, or on several machines: which, and who writes.

``--devices auto|N`` picks the devices of one machine. ``auto`` (the default) takes every
GPU when there is more than one, and otherwise the plain single-device path, with no
strategy at all. N > 1 takes the first N GPUs, or, on a machine without GPUs, splits the
CPU into N logical devices (so the same code path runs, and is tested, on any machine).
The devices are mirrored: under TensorFlow (the ``tf.*`` calls of this stage live here)
``tf.distribute.MirroredStrategy``, under JAX ``keras.distribution.DataParallel``.
Every step's global batch (``--batch-size``) is split across them and their gradients
are summed, so the learning rate, schedule and checkpoints mean what they mean on one
device. A checkpoint holds plain arrays, so it resumes with or without a strategy.

Several machines: when ``TF_CONFIG`` names more than one task (set by Ray Train's
TensorflowTrainer, a Kubernetes TFJob, a SLURM script...), the run uses
``tf.distribute.MultiWorkerMirroredStrategy``. Every worker runs the whole run (Keras's
collective ops need each of them to take every step, predict and save), reads the same
dataset and draws the same global batches; TensorFlow gives each worker its part of
each one. Only the chief (task type ``chief``, or worker 0 when there is none) writes
``-o``; the others write into a scratch folder that is removed when they finish. A
worker that stops (or never starts) ends the others with one line, after a bounded
wait (:mod:`imgkit.train.cluster_wait`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from imgkit.errors import BadInputError
from imgkit.train.cluster_wait import bounded_start, peer_lost, wait_seconds
from imgkit.train.distribute_fixes import mended

AUTO = "auto"
# One strategy per device set for the life of the process: a second MirroredStrategy
# over the same devices restarts the collective-op keys the first one used, and its
# first all-reduce then fails on a shape mismatch with the old group's.
_STRATEGIES: dict[tuple, object] = {}


def parse_devices(value) -> str | int:
    """``--devices`` as given: "auto" or a count of at least 1.

    Raises:
        BadInputError: anything else.
    """
    text = str(value).strip().lower()
    if text == AUTO:
        return AUTO
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise BadInputError(f"--devices {value}: expected auto or a device count of 1 or more")
    return count


def cluster() -> dict | None:
    """``TF_CONFIG`` when it names more than one task (a multi-worker run), else None.

    Raises:
        BadInputError: TF_CONFIG is not JSON of the usual shape, or gives this process a
            role other than chief or worker.
    """
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return None
    try:
        config = json.loads(text)
        tasks = {kind: list(addresses) for kind, addresses in config["cluster"].items()}
        task = config["task"]
        kind, index = str(task["type"]), int(task.get("index", 0))
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise BadInputError(f"TF_CONFIG is not a cluster and task description ({e})") from e
    if sum(len(a) for a in tasks.values()) <= 1:
        return None
    if kind not in ("chief", "worker") or set(tasks) - {"chief", "worker"}:
        raise BadInputError(
            f"TF_CONFIG: imgkit train runs chief and worker tasks only, not {kind!r} "
            f"(cluster: {', '.join(sorted(tasks))})"
        )
    return {"tasks": tasks, "type": kind, "index": index}


def writes_output() -> bool:
    """Whether this process writes ``-o``: yes, unless it is a multi-worker run's non-chief."""
    found = cluster()
    if found is None:
        return True
    chief = found["type"] == "chief" or ("chief" not in found["tasks"] and found["index"] == 0)
    return chief


@dataclass
class Placement:
    """Where a run trains and writes."""

    output: Path  # the folder this process writes: -o, or a non-chief's scratch copy
    strategy: object | None = None  # a tf.distribute.Strategy or keras Distribution
    kind: str = "none"  # the strategy's name; "none" on the plain path
    count: int = 1  # replicas in sync, over all workers
    workers: int = 1
    scratch: Path | None = None  # a non-chief's folder, removed at the end

    def scope(self):
        """The strategy's scope (a model built there is mirrored), or a no-op."""
        if self.strategy is None:
            return contextlib.nullcontext()
        return self.strategy.scope()

    def record(self) -> dict:
        """imgkit.json's ``devices``."""
        return {"strategy": self.kind, "count": self.count, "workers": self.workers}

    def describe(self, batch_size: int) -> str:
        """The one line a run with a strategy says about it.

        Raises:
            BadInputError: ``batch_size`` does not split evenly over the devices (Keras
                averages each device's share alone, so uneven shares would weigh images
                unequally).
        """
        if batch_size % self.count:
            raise BadInputError(
                f"--batch-size {batch_size} does not split evenly over {self.count} devices; "
                f"give a multiple of {self.count}"
            )
        where = f"{self.count} devices"
        if self.workers > 1:
            role = "chief, writes -o" if self.scratch is None else "not the chief, writes nothing"
            where += f" on {self.workers} workers ({role})"
        return (
            f"training on {where} ({self.kind}): global batch {batch_size}, "
            f"{batch_size // self.count} per device"
        )


@contextlib.contextmanager
def placed(devices, output, *, resume: bool = False) -> Iterator[Placement]:
    """Choose the devices and this process's output folder; train inside the block.

    Call it before anything else runs TensorFlow ops: splitting the CPU into logical
    devices and starting a multi-worker strategy both need TensorFlow not yet started.
    Models must be built and compiled inside :meth:`Placement.scope`, and only they: a
    Keras loss computed there is divided by the replica count. Inside the block two
    Keras bugs that break ``fit`` under a strategy are mended
    (:mod:`imgkit.train.distribute_fixes`). A non-chief's scratch folder is removed when
    the block ends.

    Args:
        devices: "auto" or a device count (see :func:`parse_devices`).
        output: the run's ``-o``.
        resume: a non-chief resumes from a copy of the chief's checkpoints in ``-o``
            (a file system the workers share).

    Raises:
        BadInputError: bad ``--devices`` or TF_CONFIG, more GPUs asked than there are,
            the CPU asked to split after TensorFlow started, a backend that cannot.
    """
    wanted = parse_devices(devices)
    found = cluster()
    place = Placement(Path(output))
    try:
        if found is not None and not writes_output():
            place.scratch = Path(tempfile.mkdtemp(prefix="imgkit-worker-"))
            place.output = place.scratch / Path(output).name
            if resume:
                _copy_checkpoints(Path(output), place.output)
        _start(place, wanted, found)
        tf_strategy = place.strategy if place.kind != "DataParallel" else None
        with mended(tf_strategy):
            yield place
    except Exception as e:
        lost = None if found is None else peer_lost(e, (found["type"], found["index"]))
        if lost is None:
            raise
        raise lost from e
    finally:
        if place.scratch is not None:
            shutil.rmtree(place.scratch, ignore_errors=True)


def _copy_checkpoints(output: Path, scratch_run: Path) -> None:
    from imgkit.bundle import CHECKPOINT_DIR

    source = output / CHECKPOINT_DIR
    if not source.is_dir():
        raise BadInputError(
            f"{output}: --resume on a worker that is not the chief needs the chief's "
            f"checkpoints ({source}) on a file system the workers share"
        )
    shutil.copytree(source, scratch_run / CHECKPOINT_DIR)


def _start(place: Placement, wanted, found: dict | None) -> None:
    import keras

    backend = keras.config.backend()
    if backend == "tensorflow":
        _start_tensorflow(place, wanted, found)
    elif found is not None:
        raise BadInputError(
            f"TF_CONFIG names a multi-worker run, which needs the TensorFlow backend, "
            f"not {backend} (KERAS_BACKEND=tensorflow)"
        )
    elif backend == "jax":
        _start_jax(place, wanted)
    elif wanted not in (AUTO, 1):
        raise BadInputError(f"--devices {wanted}: not supported on the {backend} backend")


def _start_tensorflow(place: Placement, wanted, found: dict | None) -> None:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if wanted != AUTO and gpus and wanted > len(gpus):
        raise BadInputError(f"--devices {wanted}: this machine has {len(gpus)} GPU(s)")
    if found is not None:
        if wanted != AUTO and not gpus and wanted > 1:
            raise BadInputError(
                f"--devices {wanted} with TF_CONFIG: a worker without GPUs trains on its "
                "CPU as one device (leave --devices out)"
            )
        if wanted != AUTO and gpus:
            tf.config.set_visible_devices(gpus[:wanted], "GPU")
        # Starting it waits for every worker to connect: bounded (see cluster_wait).
        with bounded_start(found["tasks"], wait_seconds()):
            place.strategy = _strategy(tf.distribute.MultiWorkerMirroredStrategy, ())
        place.kind = "MultiWorkerMirroredStrategy"
        place.workers = sum(len(a) for a in found["tasks"].values())
    else:
        count = (len(gpus) if len(gpus) > 1 else 1) if wanted == AUTO else wanted
        if count == 1:
            return  # the plain path: no strategy
        if gpus:
            names = [f"/gpu:{i}" for i in range(count)]
        else:
            _split_cpu(tf, count)
            names = [f"/cpu:{i}" for i in range(count)]
        place.strategy = _strategy(tf.distribute.MirroredStrategy, tuple(names))
        place.kind = "MirroredStrategy"
    place.count = int(place.strategy.num_replicas_in_sync)


def _strategy(kind, devices: tuple):
    key = (kind.__name__, devices)
    if key not in _STRATEGIES:
        _STRATEGIES[key] = kind(devices=list(devices)) if devices else kind()
    return _STRATEGIES[key]


def _split_cpu(tf, count: int) -> None:
    """Split the CPU into ``count`` logical devices (or find it already split so)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == count:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
        )
    except RuntimeError:
        have = len(tf.config.list_logical_devices("CPU"))
        raise BadInputError(
            f"--devices {count}: TensorFlow has already started in this process with {have} "
            f"CPU device(s); the CPU can be split into {count} only before it starts "
            "(run imgkit train in a new process)"
        ) from None


def _start_jax(place: Placement, wanted) -> None:
    import keras

    devices = _jax_devices(keras, "gpu")
    if wanted != AUTO and wanted > len(devices):
        # CPU devices exist only as many as XLA_FLAGS=--xla_force_host_platform_device_count
        # made before JAX started.
        devices = _jax_devices(keras, "cpu")
    count = (len(devices) if len(devices) > 1 else 1) if wanted == AUTO else wanted
    if count == 1:
        return
    if count > len(devices):
        raise BadInputError(
            f"--devices {count}: JAX sees {len(devices)} device(s) of that kind (for CPU "
            f"devices start with XLA_FLAGS=--xla_force_host_platform_device_count={count})"
        )
    place.strategy = keras.distribution.DataParallel(devices=devices[:count])
    place.kind, place.count = "DataParallel", count


def _jax_devices(keras, kind: str) -> list:
    try:
        return list(keras.distribution.list_devices(kind))
    except (RuntimeError, ValueError):  # JAX has no such platform here
        return []
