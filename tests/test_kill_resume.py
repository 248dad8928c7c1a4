"""A training process killed with SIGKILL resumes to exactly the uninterrupted result.

Real processes, a real signal: ``imgkit train`` runs in a subprocess, is killed with
``kill -9`` once its checkpoint says epoch 2 of 5 is done, and ``--resume`` finishes it.
History, final weights, test metrics and the temperature must equal those of a run
that was never interrupted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from tiny_data import SIZE, make_dataset

from imgkit.bundle import load_bundle, read_meta

SETTINGS = ["--model", "small-cnn", "--epochs", "5", "--batch-size", "8", "--size", f"{SIZE}"]


def _train(data, run, *extra, wait=True):
    cmd = [sys.executable, "-m", "imgkit", "train", str(data), "-o", str(run), *SETTINGS, *extra]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def _checkpointed_epoch(run) -> int:
    try:
        return json.loads((run / "checkpoints" / "state.json").read_text())["epoch"]
    except (OSError, ValueError, KeyError):
        return 0


def test_kill_9_then_resume_equals_an_uninterrupted_run(tmp_path):
    data = tmp_path / "data"
    # Enough steps per epoch (60) that the kill lands between checkpoints.
    make_dataset(data, n_train=480, n_val=40, n_test=40, seed=5)

    full = tmp_path / "full"
    done = _train(data, full)
    assert done.returncode == 0, done.stderr

    run = tmp_path / "run"
    proc = _train(data, run, wait=False)
    deadline = time.monotonic() + 240
    while _checkpointed_epoch(run) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, "training ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    killed_at = _checkpointed_epoch(run)
    assert 2 <= killed_at < 5
    assert not (run / "imgkit.json").exists() and not (run / "model.keras").exists()

    resumed = _train(data, run, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"after epoch {killed_at} of 5" in resumed.stderr

    a = pd.read_csv(full / "history.csv").drop(columns="seconds")
    b = pd.read_csv(run / "history.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(a, b, rtol=1e-6)
    meta_a, meta_b = read_meta(full), read_meta(run)
    assert meta_b["resumed"] is True and meta_b["epochs_run"] == meta_a["epochs_run"]
    assert meta_b["temperature"] == pytest.approx(meta_a["temperature"], rel=1e-6)
    for key, value in meta_a["metrics"]["test"].items():
        assert meta_b["metrics"]["test"][key] == pytest.approx(value, rel=1e-6, abs=1e-7), key
    weights_a = load_bundle(full).model.get_weights()
    weights_b = load_bundle(run).model.get_weights()
    for wa, wb in zip(weights_a, weights_b, strict=True):
        np.testing.assert_allclose(wa, wb, rtol=1e-6, atol=1e-7)
