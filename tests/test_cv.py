"""imgkit cv: a 3-fold cross-validation on tiny data, its OOF predictions, the fold
ensemble as a bundle, resuming (also after kill -9), and one-line errors for misuse."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from cli_helpers import invoke, one_line_error
from tiny_bundles import save_segmenter
from tiny_data import SIZE, make_dataset, make_folded_dataset

from imgkit.bundle import Ensemble, load_bundle
from imgkit.data.dataset import Dataset
from imgkit.data.folds import fold_view
from imgkit.infer.predict import to_probabilities
from imgkit.train.calibration import temper

FAST = ["--model", "small-cnn", "--epochs", "2", "--batch-size", "8", "--size", str(SIZE)]


@pytest.fixture(scope="module")
def cv(tmp_path_factory):
    root = tmp_path_factory.mktemp("cv")
    make_folded_dataset(root / "data", n=48, folds=3, n_test=12)
    result = invoke("cv", root / "data", "-o", root / "cv", *FAST)
    assert result.exit_code == 0, result.output
    return root / "data", root / "cv", result


def _raw(bundle, x):
    out = bundle.model.predict_on_batch(np.asarray(x, np.float32))
    return to_probabilities(np.asarray(out), bundle.output, len(bundle.classes))


def test_cv_writes_folds_oof_report_curves_and_an_ensemble(cv):
    data, out, result = cv
    assert result.stdout.strip() == str(out)
    assert "3-fold cross-validation" in result.stderr and "out of fold" in result.stderr
    assert {p.name for p in out.iterdir()} >= {
        "fold-1", "fold-2", "fold-3", "oof.csv", "cv.json", "curves.png", "imgkit.json",
    }  # fmt: skip
    report = json.loads((out / "cv.json").read_text())
    assert [r["fold"] for r in report["per_fold"]] == [1, 2, 3]
    assert report["mean"]["val_log_loss"] == pytest.approx(
        np.mean([r["val_log_loss"] for r in report["per_fold"]])
    )
    assert report["oof"]["images"] == 48 and report["test"]["images"] == 12
    assert len(report["test"]["single_fold_log_loss"]) == 3
    ds = Dataset.load(data)
    oof = pd.read_csv(out / "oof.csv")
    assert list(oof.columns) == ["path", "label", "confidence", "p_bright", "p_dim"]
    assert oof["path"].tolist() == [str(ds.abspath(p)) for p in ds.rows("train")["path"]]


def test_each_oof_row_comes_from_the_fold_model_that_never_saw_it(cv):
    data, out, _ = cv
    ds = Dataset.load(data)
    oof = pd.read_csv(out / "oof.csv")
    t = json.loads((out / "cv.json").read_text())["temperature"]
    rows = ds.rows("train")
    for k in (1, 2, 3):
        bundle = load_bundle(out / f"fold-{k}")
        assert bundle.meta["dataset"]["fold"] == k
        expected = temper(_raw(bundle, fold_view(ds, k).arrays("val", (SIZE, SIZE), 1)), t)
        mine = (rows["fold"] == str(k)).to_numpy()
        got = oof.loc[mine, ["p_bright", "p_dim"]].to_numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_the_cv_folder_predicts_as_the_averaged_folds_with_the_oof_temperature(cv, tmp_path):
    data, out, _ = cv
    ensemble = load_bundle(out)
    assert isinstance(ensemble, Ensemble) and len(ensemble.members) == 3
    x = Dataset.load(data).arrays("test", (SIZE, SIZE), 1)
    mean = np.mean([_raw(load_bundle(out / f"fold-{k}"), x) for k in (1, 2, 3)], axis=0)
    expected = temper(mean, ensemble.temperature)
    result = invoke("predict", out, data, "--split", "test", "-o", tmp_path / "p.csv")
    assert result.exit_code == 0, result.output
    got = pd.read_csv(tmp_path / "p.csv")[["p_bright", "p_dim"]].to_numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    tta = invoke("tta", out, data, "--split", "test", "-n", "2", "-o", tmp_path / "t.csv")
    assert tta.exit_code == 0, tta.output


def test_a_finished_cv_reruns_without_training_and_refuses_other_settings(cv, tmp_path):
    data, out, _ = cv
    before = (out / "oof.csv").read_bytes()
    again = invoke("cv", data, "-o", out, *FAST)
    assert again.exit_code == 0, again.output
    assert again.stderr.count("finished") == 3 and "epoch 1/" not in again.stderr
    assert (out / "oof.csv").read_bytes() == before
    other = [a if a != "2" else "3" for a in FAST]
    one_line_error(invoke("cv", data, "-o", out, *other), "fold-1", "--epochs 2, not 3")
    one_line_error(invoke("cv", data, "-o", out, "--folds", "4"), "has 3 folds, not --folds 4")

    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    (broken / "fold-2" / "imgkit.json").unlink()
    one_line_error(invoke("predict", broken, data, "--split", "test"), "fold-2", "missing")


def test_cv_without_folds_needs_folds_and_then_makes_them(tmp_path):
    make_dataset(tmp_path / "plain", n_train=24, n_val=6, n_test=6)
    one_line_error(invoke("cv", tmp_path / "plain", "-o", tmp_path / "cv", *FAST), "no folds")
    one_line_error(invoke("train", tmp_path / "plain", "-o", tmp_path / "r", "--fold", "1",
                          *FAST), "no folds")  # fmt: skip


def test_an_ensemble_of_segmenters_segments(tmp_path, make_image):
    for k in (1, 2):
        save_segmenter(tmp_path / "cv" / f"fold-{k}")
    meta = json.loads((tmp_path / "cv" / "fold-1" / "imgkit.json").read_text())
    meta["ensemble"] = {"members": ["fold-1", "fold-2"], "kind": "folds"}
    (tmp_path / "cv" / "imgkit.json").write_text(json.dumps(meta))
    image = make_image(tmp_path / "img" / "a.png", size=(16, 12), mode="L")
    result = invoke("segment", tmp_path / "cv", image, "-o", tmp_path / "masks")
    alone = invoke("segment", tmp_path / "cv" / "fold-1", image, "-o", tmp_path / "one")
    assert result.exit_code == 0 and alone.exit_code == 0, result.output
    a = (tmp_path / "masks" / "a.png").read_bytes()
    assert a == (tmp_path / "one" / "a.png").read_bytes()


def _cv_process(data, out):
    cmd = [sys.executable, "-m", "imgkit", "cv", str(data), "-o", str(out), "--model",
           "small-cnn", "--epochs", "4", "--batch-size", "8", "--size", str(SIZE)]  # fmt: skip
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def _epoch_of(run) -> int:
    try:
        return json.loads((run / "checkpoints" / "state.json").read_text())["epoch"]
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.slow
def test_kill_9_during_cv_then_rerun_gives_the_same_oof(tmp_path):
    make_folded_dataset(tmp_path / "data", n=360, folds=3, n_test=12, seed=3)
    full = _cv_process(tmp_path / "data", tmp_path / "full")
    assert full.wait(timeout=600) == 0, full.stderr.read()

    proc = _cv_process(tmp_path / "data", tmp_path / "cv")
    deadline = time.monotonic() + 300
    while _epoch_of(tmp_path / "cv" / "fold-2") < 2 and time.monotonic() < deadline:
        assert proc.poll() is None, "cv ended before it could be killed"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (tmp_path / "cv" / "fold-2" / "imgkit.json").exists()
    assert (tmp_path / "cv" / "fold-1" / "imgkit.json").exists()

    rerun = _cv_process(tmp_path / "data", tmp_path / "cv")
    assert rerun.wait(timeout=600) == 0
    err = rerun.stderr.read().decode()
    assert "fold 1/3: finished" in err and "fold 2/3: resumed" in err
    a = pd.read_csv(tmp_path / "full" / "oof.csv")
    b = pd.read_csv(tmp_path / "cv" / "oof.csv")
    pd.testing.assert_frame_equal(a, b, rtol=1e-5)


@pytest.mark.slow
def test_cv_of_a_segmentation_dataset_scores_each_image_out_of_fold(tmp_path):
    from seg_data import write_disc_pairs

    images, masks = write_disc_pairs(tmp_path / "src", n=12, size=(32, 32))
    prep = invoke("prep", images, "--masks", masks, "-o", tmp_path / "data", "--folds", "3",
                  "--test", "0.25")  # fmt: skip
    assert prep.exit_code == 0, prep.output
    model = ["--model", "unet-mobilenetv2", "--weights", "none", "--size", "32"]
    result = invoke(
        "cv", tmp_path / "data", "-o", tmp_path / "cv", *model, "--epochs", "2", "--batch-size", "4"
    )
    assert result.exit_code == 0, result.output
    oof = pd.read_csv(tmp_path / "cv" / "oof.csv")
    assert list(oof.columns) == ["path", "fold", "iou", "dice", "pixel_accuracy"]
    assert len(oof) == 9 and sorted(oof["fold"].unique()) == [1, 2, 3]
    report = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert report["oof"]["iou"] == pytest.approx(oof["iou"].mean())
    assert report["test"]["images"] == 3
    seg = invoke("segment", tmp_path / "cv", tmp_path / "data", "-o", tmp_path / "masks")
    assert seg.exit_code == 0, seg.output
    assert len(list((tmp_path / "masks").glob("*.png"))) == 3
