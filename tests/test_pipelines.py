"""The workflow scripts in cli/, run as real shell pipelines on tiny synthetic data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from synthetic import write_idx
from test_transfer import save_backbone_weights

from imgkit.evaluate.runs import SUMMARY_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]  # fmt: skip


def run_script(
    script: str, tmp_path: Path, timeout: int = 600, **env
) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "IMGKIT": f"{sys.executable} -m imgkit", "CI": "1", **env}
    proc = subprocess.run(
        ["bash", str(ROOT / "cli" / script)],
        cwd=tmp_path,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    return proc


def test_fashion_mnist_script_end_to_end(tmp_path):
    idx = write_idx(tmp_path / "idx", train=600, test=200)
    work = tmp_path / "work"
    proc = run_script(
        "fashion_mnist.sh",
        tmp_path,
        IDX_DIR=str(idx),
        WORK=str(work),
        EPOCHS="4",
        FAIL_UNDER="0.95",  # the bars are easy: 4 epochs reach 100%
        TRAIN_ARGS="--batch-size 32 --lr 0.003",
    )
    assert (work / "run" / "imgkit.json").is_file()
    test_preds = pd.read_csv(work / "test_preds.csv")
    assert len(test_preds) == 200
    # The mirror-image TTA scores the same images, and eval compares the two.
    assert len(pd.read_csv(work / "test_tta.csv")) == 200
    comparison = pd.read_csv(work / "eval" / "comparison.csv")
    assert len(comparison) == 2 and (comparison["accuracy"] >= 0.95).all()
    assert (work / "eval" / "test_tta" / "metrics.json").is_file()
    photos = pd.read_csv(work / "photo_preds.csv")
    assert list(photos.columns[:3]) == ["path", "label", "confidence"]
    # One photo-like image per class (inverted: dark on white), named after its class:
    # --invert auto turns each back, and each gets its own class.
    names = {c.replace("/", "-").replace(" ", "_").lower(): c for c in FASHION_CLASSES}
    assert sorted(Path(p).stem for p in photos["path"]) == sorted(names)
    for path, label in zip(photos["path"], photos["label"], strict=True):
        assert label == names[Path(path).stem], (path, label)
    # The script's last line on stdout is the path of what it wrote.
    assert proc.stdout.strip().splitlines()[-1].endswith("photo_preds.csv")


# Slow: two trainings and compare, each a command starting Keras (23 s on a quiet 2-core
# machine). test_compare.py is its fast twin: the same two runs (dropout 0.5 and 0)
# trained in-process, compare's summary and curves checked figure by figure.
@pytest.mark.slow
def test_dropout_study_script(tmp_path):
    idx = write_idx(tmp_path / "idx", train=300, test=100)
    work = tmp_path / "study"
    run_script(
        "dropout_study.sh",
        tmp_path,
        IDX_DIR=str(idx),
        WORK=str(work),
        EPOCHS="2",
        TRAIN_ARGS="--batch-size 64",
    )
    summary = pd.read_csv(work / "study" / "summary.csv")
    assert list(summary.columns) == SUMMARY_COLUMNS
    assert list(summary["run"]) == ["dropout-0.5", "dropout-0"]
    assert list(summary["dropout"]) == [0.5, 0.0]
    assert list(summary["epochs_run"]) == [2, 2]  # --patience past the epochs: whole curves
    numbers = summary.drop(columns=["run", "model", "path"]).to_numpy(float)
    assert np.isfinite(numbers).all()
    # Dropout's noise costs training loss at the same seed; both still learn the bars.
    assert summary["final_loss"].iloc[0] > summary["final_loss"].iloc[1]
    assert (summary["test_accuracy"] >= 0.9).all()
    from PIL import Image

    pixels = np.asarray(Image.open(work / "study" / "curves.png").convert("RGB")).astype(int)
    for rgb in ((31, 119, 180), (255, 127, 14)):  # one colour a run (matplotlib's C0, C1)
        assert np.all(np.abs(pixels - rgb) <= 2, axis=-1).sum() > 500


def _kaggle_zips(folder: Path) -> tuple[Path, Path, Path]:
    """A tiny Kaggle Dogs-vs-Cats layout: train.zip (cat.N/dog.N), test.zip (N), a sample."""
    import io
    import zipfile

    from PIL import Image

    rng = np.random.default_rng(0)

    def jpeg(bright: bool) -> bytes:
        base = 190 if bright else 60
        pixels = rng.integers(base - 40, base + 40, size=(40, 40, 3)).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="JPEG")
        return buf.getvalue()

    folder.mkdir(parents=True)
    with zipfile.ZipFile(folder / "train.zip", "w") as z:
        for i in range(1, 13):
            z.writestr(f"train/cat.{i}.jpg", jpeg(False))
            z.writestr(f"train/dog.{i}.jpg", jpeg(True))
    with zipfile.ZipFile(folder / "test.zip", "w") as z:
        for i in range(1, 7):
            z.writestr(f"test1/{i}.jpg", jpeg(i % 2 == 0))
    sample = folder / "sample_submission.csv"
    sample.write_text("id,label\n" + "".join(f"{i},0.5\n" for i in range(1, 7)))
    return folder / "train.zip", folder / "test.zip", sample


# Slow: nine commands, seven of them loading a MobileNetV2 bundle (70 s on a quiet 2-core
# machine, the default run's longest test). Its parts each have a default test: Kaggle
# zips (test_archives), MobileNetV2 on a weights file, head first (test_transfer),
# --uncalibrated (test_predict), eval's comparison (test_eval), submit --sample --clip
# (test_submit), and the script's kin, cli/cross_validation.sh, is slow too.
@pytest.mark.slow
def test_cats_vs_dogs_script_end_to_end(tmp_path):
    train_zip, test_zip, sample = _kaggle_zips(tmp_path / "kaggle")
    work = tmp_path / "work"
    # Not WEIGHTS=none: a random MobileNetV2's activations fade to nothing by block 13,
    # so its output is a constant 0.5 that no wrong column or id could change. Random
    # weights with BatchNorm statistics measured on one batch keep the brightness.
    weights = save_backbone_weights(tmp_path / "backbone.weights.h5")
    proc = run_script(
        "cats_vs_dogs.sh",
        tmp_path,
        WORK=str(work),
        TRAIN_ZIP=str(train_zip),
        TEST_ZIP=str(test_zip),
        SAMPLE=str(sample),
        WEIGHTS=str(weights),
        SIZE="32",
        EPOCHS="1",
        TTA_N="2",
        TRAIN_ARGS="--batch-size 8",
    )
    submission = pd.read_csv(work / "submission.csv")
    assert list(submission.columns) == ["id", "label"]
    assert submission["id"].tolist() == list(range(1, 7))  # the sample's order
    # Each id's label is P(dog) of its own file, clipped: the right column, the right row.
    tta = pd.read_csv(work / "tta.csv")
    p_dog = dict(zip(tta["path"].map(lambda p: int(Path(p).stem)), tta["p_dog"], strict=True))
    want = np.clip([p_dog[i] for i in submission["id"]], 0.005, 0.995)  # --clip 0.005
    np.testing.assert_allclose(submission["label"], want, atol=1e-6)
    # Even ids are the bright images, i.e. dogs; the backbone's features tell them apart.
    dogs = submission["id"] % 2 == 0
    assert submission["label"][dogs].min() > submission["label"][~dogs].max()
    y = dogs.to_numpy(float)
    p = submission["label"].to_numpy()
    assert -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)) < 0.1
    # Val log loss, plain and TTA, raw and calibrated: every one learned the task.
    comparison = pd.read_csv(work / "eval" / "comparison.csv")
    assert [Path(p).stem for p in comparison["predictions"]] == [
        "plain", "tta", "plain_calibrated", "tta_calibrated"
    ]  # fmt: skip
    assert (comparison["accuracy"] == 1).all() and (comparison["log_loss"] < 0.1).all()
    assert proc.stdout.strip().splitlines()[-1].endswith("submission.csv")


@pytest.mark.slow
def test_cross_validation_script_end_to_end(tmp_path):
    train_zip, test_zip, sample = _kaggle_zips(tmp_path / "kaggle")
    work = tmp_path / "work"
    fast = "--epochs 1 --batch-size 8 --head-epochs 1"
    proc = run_script(
        "cross_validation.sh",
        tmp_path,
        timeout=1800,  # 4 trainings and 3 cross-validations, each command starting Keras
        WORK=str(work),
        TRAIN_ZIP=str(train_zip),
        TEST_ZIP=str(test_zip),
        SAMPLE=str(sample),
        WEIGHTS="none",
        SIZE="32",
        FOLDS="2",
        TRAIN_ARGS=fast,
        SECOND_ARGS=f"{fast} --fine-tune-last 0 --augment none",
        MIN_CONFIDENCE="0.5",
    )
    for name in ("single", "cv", "cv2", "blend", "cv2-pseudo"):
        assert len(pd.read_csv(work / f"{name}.csv")) == 6, name
    assert len(pd.read_csv(work / "cv" / "oof.csv")) == 24
    pseudo = pd.read_csv(work / "data-pseudo" / "manifest.csv", dtype=str, keep_default_na=False)
    assert (pseudo["pseudo"] == "1").sum() == 6  # two classes: every confidence is >= 0.5
    assert proc.stdout.strip().splitlines()[-1].endswith("submission.csv")
