"""Multi-label beyond the basics: the 0/1-columns CSV, --allow-empty, bad rows, export
parity, the runtimes, --shard and --ray, and how the other commands take the task.

The bundle is made by hand, not trained: grey 24x24 images with a red, green or blue
bar per label (``test_multilabel.make_images``), read as RGB by a model whose label
``c`` is ``sigmoid(30 * (mean(channel c) - mean(all)) + b_c)``, so each label's
probability follows its bar; the thresholds and temperature are chosen, not fitted.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import invoke, one_line_error
from conftest import need_module
from test_multilabel import COLOURS, make_images, write_csv

CLASSES = sorted(COLOURS)  # blue, green, red
CHANNEL = {"red": 0, "green": 1, "blue": 2}


def columns_csv(path: Path, items, folder: str = "img") -> Path:
    """``path,blue,green,red`` with 0/1 cells, one row per item."""
    rows = [{"path": f"{folder}/{name}.png", **{c: int(c in labels) for c in CLASSES}}
            for name, labels in items]  # fmt: skip
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_columns_csv_allow_empty_and_bad_rows(tmp_path):
    items = make_images(tmp_path / "img", 24)
    items[2] = (items[2][0], [])  # no label ticked
    csv = columns_csv(tmp_path / "ticks.csv", items)
    text = csv.read_text().splitlines()
    text[5] = text[5].rsplit(",", 1)[0] + ",yes"  # a cell neither 0 nor 1
    text += ["img/gone.png,1,0,0", "img/broken.png,0,1,0"]
    (tmp_path / "img" / "broken.png").write_bytes(b"not a png")
    csv.write_text("\n".join(text) + "\n")

    result = invoke("prep", csv, "-o", tmp_path / "ds", "--val", "0.25")
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert info["task"] == "multilabel" and info["classes"] == CLASSES
    manifest = pd.read_csv(tmp_path / "ds" / "manifest.csv", keep_default_na=False)
    want = {f"{n}.png": " ".join(sorted(t)) for n, t in items}
    for path, label in zip(manifest["path"], manifest["label"], strict=True):
        assert label == want[Path(path).name]
    reasons = pd.read_csv(tmp_path / "ds" / "rejects.csv")["reason"]
    assert len(manifest) == 24 - 2
    assert reasons.str.contains("no labels").sum() == 1
    assert reasons.str.contains("column 'red' holds 'yes', not 0 or 1").sum() == 1
    assert reasons.str.contains("no such file").sum() == 1
    assert reasons.str.contains("not an image").sum() == 1

    kept = invoke("prep", csv, "-o", tmp_path / "kept", "--val", "0.25", "--allow-empty")
    assert kept.exit_code == 0, kept.output
    manifest = pd.read_csv(tmp_path / "kept" / "manifest.csv", keep_default_na=False)
    empty = manifest[manifest["path"].str.endswith("train_2.png")]
    # Kept as an image with no label, in a real split: not as an unlabeled image.
    assert list(empty["label"]) == [""] and empty["split"].iloc[0] != "unlabeled"
    info = json.loads((tmp_path / "kept" / "dataset.json").read_text())
    assert all("" not in counts for counts in info["counts"].values())
    assert sum(info["split_images"].values()) == 24 - 2 + 1


def test_columns_csv_is_not_taken_for_a_single_label_csv(tmp_path):
    make_images(tmp_path / "img", 2)
    csv = tmp_path / "one.csv"
    csv.write_text("path,kind\nimg/train_0.png,red\nimg/train_1.png,blue\n")
    # Not 0/1 cells: left to the path,label reader, whose message names the column.
    one_line_error(invoke("prep", csv, "-o", tmp_path / "ds"), "label")


# --- a hand-made bundle ---------------------------------------------------------------


def save_bundle(folder: Path, data: Path) -> Path:
    import keras

    from imgkit.data.dataset import Dataset

    inputs = keras.Input((24, 24, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(3, activation="sigmoid", name="probs")
    out = dense(x)
    w = np.full((3, 3), -10.0)
    for j, c in enumerate(CLASSES):
        w[CHANNEL[c], j] += 30.0
    dense.set_weights([w, np.array([0.3, 0.0, -0.2])])
    folder.mkdir(parents=True)
    keras.Model(inputs, out).save(folder / "model.keras")
    ds = Dataset.load(data)
    meta = {
        "imgkit_version": "0.1.0", "task": "multilabel", "model": "bars",
        "classes": CLASSES, "input_size": [24, 24], "channels": 3, "resize": "stretch",
        "pixels": {"scale": 1 / 255, "offset": 0.0, "inside_model": True}, "polarity": None,
        "output": "multilabel", "temperature": 1.3,
        "thresholds": {"blue": 0.05, "green": 0.995, "red": 0.45},
        "train_args": {}, "dataset": {"path": str(data), "hash": ds.hash},
        "metrics": {"val": {"micro_f1": 0.625, "per_label": {"red": {"auc": 1.0}}},
                    "test": {"mean_f2": 0.75}},
        "epochs_run": 1, "best_epoch": 1, "created": "2026-01-01T00:00:00",
    }  # fmt: skip
    (folder / "imgkit.json").write_text(json.dumps(meta), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlmore")
    items = make_images(root / "img", 40, seed=4)
    csv = write_csv(root / "t.csv", "image_name,tags", [(n, " ".join(t)) for n, t in items])
    data = root / "data"
    result = invoke("prep", csv, "--images", root / "img", "-o", data, "--val", "0.5")
    assert result.exit_code == 0, result.output
    return root, data, save_bundle(root / "run", data)


def _predict(run, data, out, *args):
    result = invoke("predict", run, data, "--split", "val", "-o", out, *args)
    assert result.exit_code == 0, result.output
    return pd.read_csv(out, keep_default_na=False)


def test_export_parity_and_runtimes_give_the_same_csv(world, tmp_path):
    need_module("onnxruntime", "the export extra: pip install -e '.[export]'")
    root, data, run = world
    result = invoke("export", run, "-f", "onnx,tflite", "--quantize", "int8")
    assert result.exit_code == 0, result.output
    exports = json.loads((run / "imgkit.json").read_text())["exports"]
    assert exports["onnx"]["parity"]["labels_agree"]
    assert exports["onnx"]["parity"]["max_abs_diff"] < 1e-4
    # --quantize int8 makes the TFLite file int8 too: held to its micro F1 on val.
    assert exports["tflite"]["quantize"] == "int8"
    assert exports["tflite"]["accuracy"]["metric"] == "micro F1"
    keras = _predict(run, data, tmp_path / "k.csv", "--runtime", "keras")
    # int8 is judged by the micro F1 of the (image, label) decisions on val, against
    # the truth: Keras's side is predict's own labels scored by hand.
    truth = {Path(p).name: set(t.split()) for p, t in _manifest_val(data)}
    pairs = [(set(r.split()), truth[Path(p).name]) for p, r in keras[["path", "labels"]].values]
    tp = sum(len(got & want) for got, want in pairs)
    wrong = sum(len(got ^ want) for got, want in pairs)
    accuracy = exports["onnx-int8"]["accuracy"]
    assert accuracy["metric"] == "micro F1" and accuracy["against"] == "the true labels"
    assert accuracy["keras"] == pytest.approx(2 * tp / (2 * tp + wrong))
    assert wrong > 0 and tp > 0  # the thresholds make some mistakes: a real test
    for runtime in ("onnx", "onnx-int8"):
        other = _predict(run, data, tmp_path / f"{runtime}.csv", "--runtime", runtime)
        assert list(other.columns) == ["path", "labels", *[f"p_{c}" for c in CLASSES]]
        assert list(other["labels"]) == list(keras["labels"])
        tol = 1e-5 if runtime == "onnx" else 0.02
        assert np.abs(other.iloc[:, 2:].to_numpy() - keras.iloc[:, 2:].to_numpy()).max() < tol


def _manifest_val(data: Path):
    manifest = pd.read_csv(data / "manifest.csv", keep_default_na=False)
    val = manifest[manifest["split"] == "val"]
    return zip(val["path"], val["label"], strict=True)


def test_shards_add_up_to_the_whole(world, tmp_path):
    _, data, run = world
    whole = (tmp_path / "whole.csv", tmp_path / "a.csv", tmp_path / "b.csv")
    _predict(run, data, whole[0], "--runtime", "keras")
    _predict(run, data, whole[1], "--runtime", "keras", "--shard", "1/2")
    _predict(run, data, whole[2], "--runtime", "keras", "--shard", "2/2")
    joined = whole[1].read_text() + whole[2].read_text()
    assert joined == whole[0].read_text() and joined.startswith("path,labels,p_blue")


@pytest.mark.slow  # a local Ray takes a minute or two to start on a loaded 2-core CPU
def test_predict_on_ray_equals_the_local_run(world, tmp_path):
    need_module("ray", "Ray is an extra: pip install -e '.[ray]'")
    import ray

    _, data, run = world
    try:
        local = _predict(run, data, tmp_path / "l.csv", "--runtime", "keras")
        on_ray = _predict(run, data, tmp_path / "r.csv", "--runtime", "keras", "--ray",
                          "--workers", "1", "--batch-size", "4")  # fmt: skip
    finally:
        ray.shutdown()
    pd.testing.assert_frame_equal(local, on_ray)


# --- the other commands ----------------------------------------------------------------


def test_audit_counts_labels_not_label_sets(world, tmp_path):
    root, data, _ = world
    result = invoke("audit", data, "-o", tmp_path / "au", "--features", "none")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "au" / "summary.json").read_text())
    manifest = pd.read_csv(data / "manifest.csv", keep_default_na=False)
    want = {c: int(manifest["label"].str.split().apply(lambda s, c=c: c in s).sum())
            for c in CLASSES}  # fmt: skip
    assert summary["class_counts"] == want
    # Label issues need one class per image: refused in one line, before the scan.
    preds = tmp_path / "p.csv"
    preds.write_text("path,labels,p_blue,p_green,p_red\n")
    one_line_error(invoke("audit", data, "-o", tmp_path / "au2", "--features", "none",
                          "--predictions", preds), "multilabel", "--predictions")  # fmt: skip


def test_blend_and_class_weights_say_what_they_need_in_one_line(world, tmp_path):
    root, data, run = world
    args = ("--model", "small-cnn", "--size", "24", "--epochs", "1")
    one_line_error(invoke("train", data, "-o", tmp_path / "t", *args, "--class-weight",
                          "balanced"), "--class-weight", "multi-label")  # fmt: skip
    preds = _predict(run, data, tmp_path / "a.csv", "--runtime", "keras")
    assert len(preds)
    one_line_error(invoke("blend", tmp_path / "a.csv", tmp_path / "a.csv"), "multi-label", "--fit")


def test_report_counts_per_label_and_shows_each_split(world, tmp_path):
    root, data, run = world
    result = invoke("report", run, "-o", tmp_path / "rep")
    assert result.exit_code == 0, result.output
    page = (tmp_path / "rep" / "index.html").read_text()
    assert (
        "micro_f1 (training&#39;s val split)" in page or "micro_f1 (training's val split)" in page
    )
    assert (
        "mean_f2 (training&#39;s test split)" in page or "mean_f2 (training's test split)" in page
    )
    from imgkit.bundle import load_bundle
    from imgkit.evaluate.report import data_counts

    where, header, rows = data_counts(load_bundle(run))
    manifest = pd.read_csv(data / "manifest.csv", keep_default_na=False)
    assert header == ["split", *CLASSES, "all"]
    for split, *counts in rows:
        part = manifest[manifest["split"] == split]
        labels = part["label"].str.split()
        assert counts == [int(labels.apply(lambda s, c=c: c in s).sum()) for c in CLASSES] + [
            len(part)
        ]


def test_bench_times_a_multilabel_bundle(world):
    root, data, run = world
    result = invoke("bench", run, root / "img", "--limit", "8", "--batch-size", "4")
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(io.StringIO(result.stdout))
    keras = rows[rows["runtime"] == "keras"]
    assert list(keras["batch"]) == [1, 4] and (keras["max_diff"] == 0).all()
