"""Multi-label classification: prep's two CSV formats, splits, thresholds, the CSV
columns predict writes, eval's scores and submit's Planet format.

The images are tiny: grey squares with a coloured bar for each label they carry (red,
green, blue, each at its own height), so a small CNN learns them in a few epochs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import invoke, one_line_error
from PIL import Image

from imgkit.data.multisplit import iterative_splits
from imgkit.train.multilabel_scores import (
    average_precision,
    best_threshold,
    fit_thresholds,
    roc_auc,
    scores,
)

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}


def make_images(folder: Path, n: int, seed: int = 0) -> list[tuple[str, list[str]]]:
    """``n`` images train_<i>.png and their labels (each colour present or not)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        labels = [c for c in COLOURS if rng.random() < 0.45] or ["red"]
        a = np.full((24, 24, 3), 128, np.uint8)
        for k, colour in enumerate(COLOURS):
            if colour in labels:
                a[k * 8 : k * 8 + 8, 2:22] = COLOURS[colour]
        Image.fromarray(a).save(folder / f"train_{i}.png")
        out.append((f"train_{i}", labels))
    return out


def write_csv(path: Path, header: str, rows) -> Path:
    path.write_text(header + "\n" + "".join(f"{a},{b}\n" for a, b in rows), encoding="utf-8")
    return path


def test_path_labels_csv_with_separator_and_rejects(tmp_path):
    items = make_images(tmp_path / "img", 30)
    rows = [(f"img/{name}.png", ";".join(labels)) for name, labels in items]
    rows += [("img/train_0.png", ""), ("img/missing.png", "red")]  # a duplicate, a missing file
    rows[1] = (rows[1][0], "")  # no labels
    csv = write_csv(tmp_path / "labels.csv", "path,labels", rows)
    result = invoke("prep", csv, "-o", tmp_path / "ds", "--label-sep", ";", "--val", "0.2")
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert info["task"] == "multilabel"
    assert info["classes"] == ["blue", "green", "red"]
    manifest = pd.read_csv(tmp_path / "ds" / "manifest.csv", keep_default_na=False)
    # Labels stored space-separated and sorted; each split's counts are per label.
    want = {f"train_{i}.png": " ".join(sorted(labels)) for i, (_, labels) in enumerate(items)}
    for path, label in zip(manifest["path"], manifest["label"], strict=True):
        assert label == want[Path(path).name]
    for split, counts in info["counts"].items():
        part = manifest[manifest["split"] == split]
        for c in info["classes"]:
            assert counts.get(c, 0) == sum(c in v.split() for v in part["label"])
    assert info["split_images"] == manifest["split"].value_counts().to_dict()
    rejects = pd.read_csv(tmp_path / "ds" / "rejects.csv")
    reasons = " | ".join(rejects["reason"])
    assert "no labels" in reasons and len(manifest) == 29


def test_planet_csv_names_without_extension(tmp_path):
    items = make_images(tmp_path / "train-jpg", 20)
    rows = [(name, " ".join(labels)) for name, labels in items] + [("train_99", "red")]
    csv = write_csv(tmp_path / "train_v2.csv", "image_name,tags", rows)
    one_line_error(invoke("prep", csv, "-o", tmp_path / "x"), "--images")
    result = invoke("prep", csv, "--images", tmp_path / "train-jpg", "-o", tmp_path / "ds")
    assert result.exit_code == 0, result.output
    manifest = pd.read_csv(tmp_path / "ds" / "manifest.csv", keep_default_na=False)
    assert sorted(Path(p).stem for p in manifest["path"]) == sorted(n for n, _ in items)
    rejects = pd.read_csv(tmp_path / "ds" / "rejects.csv")
    assert list(rejects["reason"].str.contains("no image named 'train_99'")) == [True]


def test_iterative_splits_keep_every_label_in_every_split():
    rng = np.random.default_rng(3)
    names = ["a", "b", "c", "rare"]
    sets = [
        frozenset(x for x in names if rng.random() < (0.04 if x == "rare" else 0.3)) or {"a"}
        for _ in range(400)
    ]
    splits = iterative_splits([frozenset(s) for s in sets], 0.15, 0.15, seed=0)
    assert iterative_splits([frozenset(s) for s in sets], 0.15, 0.15, seed=0) == splits
    for name in names:
        total = sum(name in s for s in sets)
        for split, share in (("val", 0.15), ("test", 0.15)):
            got = sum(name in s for s, sp in zip(sets, splits, strict=True) if sp == split)
            # Within one image of its share, even for the rare label.
            assert abs(got - share * total) <= 1.0, (name, split, got, share * total)
    assert "test" not in iterative_splits([frozenset({"a"})] * 20, 0.2, 0.0, seed=0)


def test_thresholds_fit_each_label_and_f2_favours_recall():
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.4, 0.35, 0.3, 0.2, 0.1])
    y = np.array([1, 1, 0, 1, 0, 0, 1, 0, 0])
    t1, t2 = best_threshold(p, y, 1.0), best_threshold(p, y, 2.0)
    # F1 is best cutting below 0.6 (3 of 4 found, 1 false: 0.75, against 8/11 at 0.3);
    # F2, weighting recall, cuts below 0.3 (all 4 found, 3 false: 0.87, against 0.75).
    assert 0.4 < t1 < 0.6 and 0.2 < t2 < 0.3
    assert best_threshold(p, np.zeros(9), 1.0) == 0.5  # nothing to fit
    both = fit_thresholds(np.stack([p, 1 - p], 1), np.stack([y, 1 - y], 1), "f1")
    assert both[0] == t1 and both.shape == (2,)
    assert list(fit_thresholds(np.stack([p, p], 1), None, None, 0.3)) == [0.3, 0.3]
    with pytest.raises(Exception, match="binary"):
        fit_thresholds(np.stack([p, p], 1), np.stack([y, y], 1), "balanced")


def test_scores_by_hand():
    y = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
    p = np.array([[0.9, 0.2], [0.6, 0.4], [0.7, 0.8], [0.1, 0.3]])
    s = scores(p, y, np.array([0.5, 0.5]), ["a", "b"])
    # a: tp 2 fp 1 fn 0; b: tp 1 fp 0 fn 1. micro: tp 3 fp 1 fn 1.
    assert s["micro_f1"] == pytest.approx(0.75)
    assert s["macro_f1"] == pytest.approx(round((0.8 + 2 / 3) / 2, 6))
    assert s["per_label"]["a"]["auc"] == pytest.approx(0.75)
    assert roc_auc(p[:, 1], y[:, 1]) == 1.0 and average_precision(p[:, 1], y[:, 1]) == 1.0
    assert s["mAP"] == pytest.approx(round((average_precision(p[:, 0], y[:, 0]) + 1) / 2, 6))
    # Per image: exact; one of two found (5/9); one extra (5/6); and image 4 has no
    # label and is given none, a perfect F2 of 1, not 0.
    assert s["mean_f2"] == pytest.approx(round((1 + 5 / 9 + 5 / 6 + 1) / 4, 6))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A Planet-style dataset, a small CNN trained on it, its test predictions."""
    root = tmp_path_factory.mktemp("multilabel")
    items = make_images(root / "train-jpg", 90)
    csv = write_csv(root / "train_v2.csv", "image_name,tags", [(n, " ".join(t)) for n, t in items])
    data, run = root / "data", root / "run"
    prep = invoke("prep", csv, "--images", root / "train-jpg", "-o", data, "--val", "0.25")
    assert prep.exit_code == 0, prep.output
    args = ["--model", "small-cnn", "--size", "24", "--epochs", "12", "--threshold", "f2"]
    result = invoke("train", data, "-o", run, *args)
    assert result.exit_code == 0, result.output
    preds = root / "preds.csv"
    result = invoke("predict", run, data, "--split", "test", "-o", preds)
    assert result.exit_code == 0, result.output
    return root, data, run, preds


def test_train_writes_thresholds_temperature_and_scores(trained):
    _, _, run, _ = trained
    meta = json.loads((run / "imgkit.json").read_text())
    assert meta["task"] == "multilabel" and meta["output"] == "multilabel"
    assert set(meta["thresholds"]) == {"blue", "green", "red"}
    assert meta["threshold_metric"] == "f2" and meta["temperature"] > 0
    test = meta["metrics"]["test"]
    for key in ("micro_f1", "macro_f1", "micro_f2", "macro_f2", "mAP", "mean_f2"):
        assert 0 <= test[key] <= 1
    assert set(test["per_label"]["red"]) >= {"auc", "ap", "f2", "threshold"}
    assert test["mAP"] > 0.6  # the bars are easy: far above chance (about 0.45)


def test_predict_columns_follow_the_thresholds(trained):
    _, _, run, preds = trained
    meta = json.loads((run / "imgkit.json").read_text())
    df = pd.read_csv(preds, keep_default_na=False)
    classes = meta["classes"]
    assert list(df.columns) == ["path", "labels", *[f"p_{c}" for c in classes]]
    for _, row in df.iterrows():
        want = [c for c in classes if row[f"p_{c}"] >= meta["thresholds"][c] - 1e-6]
        assert row["labels"].split() == want


def test_eval_and_submit_planet_format(trained, tmp_path):
    root, data, run, preds = trained
    result = invoke("eval", preds, "--truth", data, "-o", tmp_path / "ev")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    meta = json.loads((run / "imgkit.json").read_text())
    # The same decisions scored twice: at training, and from predict's CSV.
    assert metrics["micro_f2"] == pytest.approx(meta["metrics"]["test"]["micro_f2"], abs=1e-5)
    per_label = pd.read_csv(tmp_path / "ev" / "per_label.csv")
    assert list(per_label["label"]) == meta["classes"]
    gate = invoke("eval", preds, "--truth", data, "--fail-under", "mean_f2=1.01")
    assert gate.exit_code == 3

    df = pd.read_csv(preds, keep_default_na=False)
    ids = [Path(p).stem for p in df["path"]][::-1]
    sample = write_csv(tmp_path / "sample.csv", "image_name,tags", [(i, "clear") for i in ids])
    out = tmp_path / "submission.csv"
    result = invoke("submit", preds, "--sample", sample, "-o", out)
    assert result.exit_code == 0, result.output
    sub = pd.read_csv(out, keep_default_na=False)
    assert list(sub.columns) == ["image_name", "tags"] and list(sub["image_name"]) == ids
    by_id = dict(zip([Path(p).stem for p in df["path"]], df["labels"], strict=True))
    assert list(sub["tags"]) == [by_id[i] for i in ids]
    one_line_error(invoke("submit", preds, "--clip", "0.01"), "--clip")


def test_backbone_head_becomes_one_sigmoid_per_label():
    from imgkit.models import create_model
    from imgkit.models.backbones import head_model

    model = create_model("mobilenetv2", 5, (32, 32), 3, multilabel=True, weights="none")
    assert tuple(model.output.shape) == (None, 5)
    assert model.layers[-1].name == "probs" and model.layers[-1].activation.__name__ == "sigmoid"
    assert tuple(head_model(model).output.shape) == (None, 5)  # cached features still work
