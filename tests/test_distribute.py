"""Training on several devices and machines: ``--devices`` and ``TF_CONFIG``.

TensorFlow's logical devices must be set before it starts, and a multi-worker strategy
wants processes of its own, so every training run here is a real process: the CPU split
in two (MirroredStrategy), two worker processes on 127.0.0.1
(MultiWorkerMirroredStrategy), each checked against the same run on one device. They
are mostly start-up, so the :func:`runs` fixture starts them all at once.

Dropout is off: each device draws its own dropout masks, so with it the runs are
equally good but not the same numbers. The train split (64) is a multiple of the batch
(16), so every batch splits evenly; a short batch that does not is averaged per device
by Keras, and that one step then weighs its images differently (README, Scale).
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import invoke, one_line_error
from PIL import Image
from tiny_data import SIZE, make_dataset

from imgkit.bundle import read_meta
from imgkit.data.dataset import Dataset
from imgkit.errors import ImgkitError

SETTINGS = ["--model", "small-cnn", "--epochs", "4", "--batch-size", "16", "--size", f"{SIZE}",
            "--dropout", "0", "--lr", "0.003"]  # fmt: skip
# Mirrored devices sum their gradients in another order than one device adds them up:
# measured differences up to 6e-8 (float32 rounding). Shares weighed wrongly move the
# loss by 1e-2 and more, so 1e-5 tells the two apart with room to spare.
TOLERANCE = 1e-5
TIMEOUT = 420

# One process for everything on two logical CPUs (each start-up costs seconds).
SCRIPT = """
import json, sys
from imgkit.commands import main
from imgkit.train.trainer import train
data, two, run, rgb, head, settings = sys.argv[1:7]
# imgkit train --devices 2, as typed
assert main(["train", data, "-o", two, *json.loads(settings), "--devices", "2"]) == 0
fast = dict(model="small-cnn", epochs=4, batch_size=16, input_size=(12, 12), dropout=0, lr=0.003)
def stop(report):
    if report["epoch"] == 2:
        raise KeyboardInterrupt
try:  # interrupted after epoch 2 on one device...
    train(data, run, devices=1, on_epoch=stop, **fast)
except KeyboardInterrupt:
    pass
resumed = train(data, run, resume=True, devices=2)  # ...finished on two
features = train(rgb, head, devices=2, model="mobilenetv2", input_size=(32, 32), weights="none",
                 fine_tune_last=0, augment="none", epochs=1, batch_size=16)
print(json.dumps({"resumed": resumed["devices"], "features": features["devices"],
                  "cached": features["transfer"]["features_cached"]}))
"""


def _env(**extra):
    return {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def _start(log, *args, env=None):
    """A process whose stdout and stderr go to files (pipes left unread can stall it)."""
    with open(f"{log}.out", "w") as out, open(f"{log}.err", "w") as err:
        return subprocess.Popen([sys.executable, *map(str, args)], stdout=out, stderr=err,
                                env=env or _env())  # fmt: skip


def _train(data, run, *extra, env=None):
    return _start(run, "-m", "imgkit", "train", data, "-o", run, *SETTINGS, *extra, env=env)


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _rgb_dataset(folder):
    ds = make_dataset(folder, n_train=32, n_val=8, n_test=0, size=32)
    for split in ("train", "val"):
        ds.store_arrays(split, np.repeat(ds.arrays(split, (32, 32), 1, "stretch"), 3, axis=-1))
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist") / "squares"
    make_dataset(root, n_train=64, n_val=16, n_test=16, seed=3)
    return root


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory):
    """Every training process of this file, started together: {name: (code, out, err)}."""
    root = tmp_path_factory.mktemp("runs")
    (root / "worker-tmp").mkdir()
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    script = [SCRIPT, data, root / "two", root / "resume", _rgb_dataset(root / "rgb"),
              root / "head", json.dumps(SETTINGS)]  # fmt: skip
    started = {"one": _train(data, root / "one"), "script": _start(root / "script", "-c", *script)}
    for index in (0, 1):
        task = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        env = _env(TF_CONFIG=json.dumps(task), TMPDIR=str(root / "worker-tmp"))
        started[f"w{index}"] = _train(data, root / f"w{index}", env=env)
    done = {}
    try:
        for name, proc in started.items():
            code = proc.wait(timeout=TIMEOUT)
            logs = [Path(f"{root / name}.{kind}").read_text() for kind in ("out", "err")]
            done[name] = (code, *logs)
    finally:
        for proc in started.values():
            proc.kill()
    return root, done


def _ok(runs, *names):
    for name in names:
        code, _out, err = runs[1][name]
        assert code == 0, f"{name}: {err[-3000:]}"


def _history(run) -> pd.DataFrame:
    return pd.read_csv(run / "history.csv").drop(columns="seconds")


def _same_curves(a, b):
    for column in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(a[column], b[column], rtol=0, atol=TOLERANCE, err_msg=column)


@pytest.mark.tensorflow
def test_two_devices_train_as_one(runs):
    _ok(runs, "one", "script")
    root, done = runs
    assert "training on" not in done["one"][2]  # the plain path: no strategy, no line
    assert read_meta(root / "one")["devices"] == {"strategy": "none", "count": 1, "workers": 1}
    assert (
        "training on 2 devices (MirroredStrategy): global batch 16, 8 per device"
        in done["script"][2]
    )
    meta = read_meta(root / "two")
    assert meta["devices"] == {"strategy": "MirroredStrategy", "count": 2, "workers": 1}
    _same_curves(_history(root / "one"), _history(root / "two"))
    for key, value in read_meta(root / "one")["metrics"]["test"].items():
        assert meta["metrics"]["test"][key] == pytest.approx(value, abs=TOLERANCE), key


@pytest.mark.tensorflow
def test_a_one_device_checkpoint_resumes_on_two_and_features_cache(runs):
    _ok(runs, "one", "script")
    root, done = runs
    out = json.loads(done["script"][1].strip().splitlines()[-1])
    assert out["resumed"] == {"strategy": "MirroredStrategy", "count": 2, "workers": 1}
    assert read_meta(root / "resume")["resumed"] is True
    _same_curves(_history(root / "one"), _history(root / "resume"))
    assert out["features"]["count"] == 2 and out["cached"] is True
    assert (root / "head" / "model.keras").is_file()


def _test_images(data, folder):
    x = Dataset.load(data).arrays("test", (SIZE, SIZE), 1, "stretch")
    folder.mkdir()
    for i, image in enumerate(np.asarray(x)):
        Image.fromarray(image[..., 0]).save(folder / f"{i:02d}.png")
    return folder


@pytest.mark.tensorflow
def test_two_workers_write_one_bundle_as_good_as_one_process(runs, data, tmp_path):
    _ok(runs, "one", "w0", "w1")
    root, done = runs
    chief, other, one = root / "w0", root / "w1", root / "one"
    assert done["w0"][1].strip() == str(chief) and done["w1"][1] == ""
    assert "2 workers (chief, writes -o)" in done["w0"][2]
    # The non-chief wrote nothing under its -o, nor a lock beside it; its scratch is gone.
    assert not other.exists() and not (root / ".w1.lock").exists()
    assert list((root / "worker-tmp").iterdir()) == []
    meta = read_meta(chief)
    assert meta["devices"] == {"strategy": "MultiWorkerMirroredStrategy", "count": 2, "workers": 2}
    _same_curves(_history(one), _history(chief))
    for key in ("loss", "accuracy"):
        expected = read_meta(one)["metrics"]["test"][key]
        assert meta["metrics"]["test"][key] == pytest.approx(expected, abs=TOLERANCE), key

    images = _test_images(data, tmp_path / "test-images")
    preds = []
    for run in (one, chief):
        result = invoke("predict", run, images)
        assert result.exit_code == 0, result.output
        preds.append(pd.read_csv(io.StringIO(result.stdout)))
    assert (preds[0]["label"] == preds[1]["label"]).all()
    np.testing.assert_allclose(preds[0]["confidence"], preds[1]["confidence"], atol=TOLERANCE)


@pytest.mark.parametrize("value", ["0", "abc", "-2"])
def test_bad_devices_is_one_clear_line(data, tmp_path, value):
    result = invoke("train", data, "-o", tmp_path / "r", "--model", "small-cnn", "--devices", value)
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "--devices" in errors[0] and "auto or a device count" in errors[0]
    assert not (tmp_path / "r").exists()


@pytest.mark.tensorflow
def test_splitting_the_cpu_after_tensorflow_started_is_one_line(data, tmp_path):
    import tensorflow as tf

    have = len(tf.config.list_logical_devices("CPU"))  # starts TensorFlow here
    result = invoke("train", data, "-o", tmp_path / "r", *SETTINGS, "--devices", have + 1)
    one_line_error(result, f"--devices {have + 1}", "already started", "new process")


def test_a_tf_config_role_imgkit_cannot_take_is_one_line(data, tmp_path, monkeypatch):
    config = {"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, "task": {"type": "ps", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    result = invoke("train", data, "-o", tmp_path / "r", "--model", "small-cnn")
    one_line_error(result, "TF_CONFIG", "'ps'")


def _worker_env(cluster, index, **extra):
    task = {"cluster": cluster, "task": {"type": "worker", "index": index}}
    return _env(TF_CONFIG=json.dumps(task), **extra)


@pytest.mark.tensorflow
def test_a_worker_that_never_starts_ends_the_other_with_one_line(data, tmp_path):
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    run = tmp_path / "alone"
    started = time.monotonic()
    proc = _train(data, run, env=_worker_env(cluster, 0, IMGKIT_WORKER_WAIT="1"))
    try:
        code = proc.wait(timeout=120)  # without the bound: forever (SIGTERM is ignored too)
    finally:
        proc.kill()
    took = time.monotonic() - started
    err = Path(f"{run}.err").read_text()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1, err
    assert len(lines) == 1 and lines[0].startswith("Error: TF_CONFIG:"), err
    assert "within 1 s" in lines[0] and cluster["worker"][1] in lines[0]
    assert "IMGKIT_WORKER_WAIT" in lines[0]
    assert took < 60 and not run.exists()


def test_a_bad_worker_wait_is_one_line(monkeypatch):
    from imgkit.train.cluster_wait import DEFAULT_WAIT, wait_seconds

    monkeypatch.delenv("IMGKIT_WORKER_WAIT", raising=False)
    assert wait_seconds() == DEFAULT_WAIT
    monkeypatch.setenv("IMGKIT_WORKER_WAIT", "2.5")
    assert wait_seconds() == 2.5
    for bad in ("0", "-1", "soon", "nan"):
        monkeypatch.setenv("IMGKIT_WORKER_WAIT", bad)
        with pytest.raises(ImgkitError, match=f"IMGKIT_WORKER_WAIT={bad}: expected"):
            wait_seconds()


@pytest.mark.slow
@pytest.mark.tensorflow
def test_a_worker_killed_mid_run_ends_the_other_with_one_line(data, tmp_path):
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    longer = [*SETTINGS[:3], "200", *SETTINGS[4:]]  # epochs: the run outlasts the kill
    procs = [
        _start(
            tmp_path / f"w{i}",
            "-m",
            "imgkit",
            "train",
            data,
            "-o",
            tmp_path / f"w{i}",
            *longer,
            env=_worker_env(cluster, i),
        )  # fmt: skip
        for i in (0, 1)
    ]
    try:
        state = tmp_path / "w0" / "checkpoints" / "state.json"
        deadline = time.monotonic() + TIMEOUT
        while not state.is_file() and procs[0].poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert procs[0].poll() is None and procs[1].poll() is None, "a worker ended early"
        os.kill(procs[1].pid, signal.SIGKILL)
        assert procs[1].wait(timeout=30) == -signal.SIGKILL
        killed = time.monotonic()
        code = procs[0].wait(timeout=120)
    finally:
        for proc in procs:
            proc.kill()
    err = Path(f"{tmp_path / 'w0'}.err").read_text()
    assert code == 1, err[-3000:]
    assert time.monotonic() - killed < 60  # TensorFlow's heartbeats: 10 s
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("Error: TF_CONFIG: worker 1 of the multi-worker run stopped"), last
    assert "--resume" in last
