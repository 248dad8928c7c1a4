"""Cross-validation of multi-label data: folds stratified for every label at once, a
3-fold ``imgkit cv`` end to end (oof.csv, cv.json, the per-label thresholds fitted on
the OOF predictions) and the CV folder predicting as the averaged fold models."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from cli_helpers import invoke, one_line_error
from test_multilabel import make_images, write_csv

from imgkit.bundle import Ensemble, load_bundle
from imgkit.data.dataset import Dataset, label_set
from imgkit.data.folds import fold_view
from imgkit.data.multisplit import iterative_folds
from imgkit.train import multilabel_scores as mls

FAST = ["--model", "small-cnn", "--size", "24", "--epochs", "3", "--batch-size", "8"]
LABELS = ("blue", "green", "red")


def _prep(root, n, *args):
    items = make_images(root / "img", n, seed=7)
    csv = write_csv(root / "t.csv", "image_name,tags", [(a, " ".join(t)) for a, t in items])
    result = invoke("prep", csv, "--images", root / "img", "-o", root / "data", *args)
    assert result.exit_code == 0, result.output
    return root / "data"


def test_iterative_folds_spread_every_label_and_keep_groups_whole():
    rng = np.random.default_rng(3)
    sets = [frozenset(c for c in "abcd" if rng.random() < 0.3 + 0.15 * "abcd".index(c))
            for _ in range(120)]  # fmt: skip
    sets += [frozenset({"rare"})] * 4 + [None]
    groups = [f"g{i // 3}" if i < 30 else None for i in range(len(sets))]
    folds = iterative_folds(sets, 4, seed=1, groups=[g or f"\0{i}" for i, g in enumerate(groups)])
    assert folds[-1] is None and all(f in (1, 2, 3, 4) for f in folds[:-1])
    for label in ("a", "b", "c", "d", "rare"):
        per_fold = Counter(f for s, f in zip(sets, folds, strict=True) if s and label in s)
        # Groups of three placed whole cost a little evenness; never more than that.
        assert max(per_fold.values()) - min(per_fold[k] for k in (1, 2, 3, 4)) <= 3, label
    assert Counter(f for s, f in zip(sets, folds, strict=True) if s and "rare" in s) == {
        1: 1, 2: 1, 3: 1, 4: 1,
    }  # fmt: skip
    for g in {g for g in groups if g}:
        assert len({f for f, h in zip(folds, groups, strict=True) if h == g}) == 1
    assert folds == iterative_folds(sets, 4, seed=1, groups=[g or f"\0{i}" for i, g in
                                                             enumerate(groups)])  # fmt: skip


def test_prep_folds_a_multilabel_dataset_per_label(tmp_path):
    data = _prep(tmp_path, 60, "--folds", "3")
    info = json.loads((data / "dataset.json").read_text())
    assert info["task"] == "multilabel" and info["folds"] == 3
    m = pd.read_csv(data / "manifest.csv", dtype=str, keep_default_na=False)
    assert set(m["split"]) == {"train"} and set(m["fold"]) == {"1", "2", "3"}
    for label in LABELS:
        per_fold = Counter(f for f, s in zip(m["fold"], m["label"], strict=True)
                           if label in label_set(s))  # fmt: skip
        assert max(per_fold.values()) - min(per_fold.values()) <= 1, (label, per_fold)
        assert {k: info["fold_counts"][k][label] for k in "123"} == {k: per_fold[k] for k in "123"}
    # Dealt by every label at once (not by label set, as a single-label dataset is).
    sets = [frozenset(label_set(s)) for s in m["label"]]
    units = [f"\0{i}" for i in range(len(sets))]
    assert m["fold"].astype(int).tolist() == iterative_folds(sets, 3, 0, units)
    # Single-label predictions cannot pseudo-label it (multi-label ones can:
    # test_multilabel_pseudo.py).
    preds = tmp_path / "p.csv"
    preds.write_text("path,label,confidence\nimg/train_0.png,red,0.99\n")
    pseudo = invoke("prep", data, preds, "--pseudo", "-o", tmp_path / "ps")
    one_line_error(pseudo, "classification predictions", "multilabel")


@pytest.fixture(scope="module")
def cv(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlcv")
    data = _prep(root, 54, "--folds", "3", "--test", "0.2")
    result = invoke("cv", data, "-o", root / "cv", *FAST, "--threshold", "f2")
    assert result.exit_code == 0, result.output
    return data, root / "cv", result


def test_multilabel_cv_writes_oof_rows_scores_and_oof_thresholds(cv):
    data, out, result = cv
    assert "3-fold cross-validation" in result.stderr and "mean_f2" in result.stderr
    ds = Dataset.load(data)
    oof = pd.read_csv(out / "oof.csv", keep_default_na=False)
    assert list(oof.columns) == ["path", "labels", *(f"p_{c}" for c in LABELS)]
    rows = ds.rows("train")
    assert sorted(oof["path"]) == sorted(str(ds.abspath(p)) for p in rows["path"])
    assert len(oof) == len(set(oof["path"])) == len(rows)
    report = json.loads((out / "cv.json").read_text())
    assert [r["fold"] for r in report["per_fold"]] == [1, 2, 3]
    for key in ("val_micro_f1", "val_macro_f1", "val_micro_f2", "val_macro_f2", "val_mAP"):
        values = [r[key] for r in report["per_fold"]]
        assert report["mean"][key] == pytest.approx(np.mean(values))
        assert report["std"][key] == pytest.approx(np.std(values, ddof=1))
    assert report["oof"]["images"] == len(rows) and report["test"]["images"] == len(ds.rows("test"))
    assert len(report["test"]["single_fold_mean_f2"]) == 3
    # The thresholds are each label's best F2 on the tempered OOF probabilities, and
    # oof.csv's labels are those probabilities at those thresholds.
    meta = json.loads((out / "imgkit.json").read_text())
    assert meta["threshold_metric"] == "f2" and meta["output"] == "multilabel"
    index = {p: i for i, p in enumerate(str(ds.abspath(p)) for p in rows["path"])}
    truth = ds.label_matrix("train")[[index[p] for p in oof["path"]]]
    p = oof[[f"p_{c}" for c in LABELS]].to_numpy()
    expected = mls.fit_thresholds(p, truth, "f2")
    got = np.array([meta["thresholds"][c] for c in LABELS])
    np.testing.assert_allclose(got, expected, atol=2e-6)
    decided = [" ".join(c for c, on in zip(LABELS, row, strict=True) if on) for row in p >= got]
    assert oof["labels"].tolist() == decided
    scored = mls.scores(p, truth, got, LABELS)
    assert report["oof"]["mean_f2"] == pytest.approx(scored["mean_f2"], abs=1e-5)
    assert report["oof"]["mAP"] == pytest.approx(scored["mAP"], abs=1e-5)


def test_each_oof_row_is_its_fold_model_tempered_by_the_oof_temperature(cv):
    data, out, _ = cv
    ds = Dataset.load(data)
    oof = pd.read_csv(out / "oof.csv", keep_default_na=False)
    t = json.loads((out / "imgkit.json").read_text())["temperature"]
    assert t != 1.0
    rows = ds.rows("train")
    for k in (1, 2, 3):
        bundle = load_bundle(out / f"fold-{k}")
        x = fold_view(ds, k).arrays("val", (24, 24), bundle.channels, bundle.resize)
        raw = np.asarray(bundle.model.predict_on_batch(np.asarray(x, np.float32)))
        mine = (rows["fold"] == str(k)).to_numpy()
        got = oof.loc[mine, [f"p_{c}" for c in LABELS]].to_numpy()
        np.testing.assert_allclose(got, mls.temper(raw, t), atol=2e-6)


def test_the_cv_folder_predicts_the_averaged_folds_once_tempered(cv, tmp_path):
    data, out, _ = cv
    ensemble = load_bundle(out)
    assert isinstance(ensemble, Ensemble) and len(ensemble.members) == 3
    shape = ((24, 24), ensemble.channels, ensemble.resize)
    x = np.asarray(Dataset.load(data).arrays("test", *shape), np.float32)
    raw = [np.asarray(load_bundle(out / f"fold-{k}").model.predict_on_batch(x)) for k in (1, 2, 3)]
    expected = mls.temper(np.mean(raw, axis=0), ensemble.temperature)
    result = invoke("predict", out, data, "--split", "test", "-o", tmp_path / "p.csv")
    assert result.exit_code == 0, result.output
    got = pd.read_csv(tmp_path / "p.csv", keep_default_na=False)
    np.testing.assert_allclose(got[[f"p_{c}" for c in LABELS]].to_numpy(), expected, atol=2e-6)
    thresholds = np.array(ensemble.thresholds)
    decided = [" ".join(c for c, on in zip(LABELS, row, strict=True) if on)
               for row in expected >= thresholds]  # fmt: skip
    assert got["labels"].tolist() == decided


def _noisy(frame: pd.DataFrame, truth: np.ndarray, seed: int) -> pd.DataFrame:
    """A second model's predictions of the same images: the truth, blurred by noise."""
    rng = np.random.default_rng(seed)
    p = np.clip(0.25 + 0.5 * truth + rng.normal(0, 0.2, truth.shape), 0.01, 0.99)
    out = frame[["path", "labels"]].copy()
    for j, c in enumerate(LABELS):
        out[f"p_{c}"] = p[:, j]
    return out


def test_blend_of_multilabel_runs_fits_thresholds_on_the_oof_blend(cv, tmp_path):
    from imgkit.evaluate.blend import read_table
    from imgkit.evaluate.blend_multilabel import blend_probabilities, fit_multilabel_blend

    data, out, _ = cv
    ds = Dataset.load(data)
    test_a = tmp_path / "test_a.csv"
    assert invoke("predict", out, data, "--split", "test", "-o", test_a).exit_code == 0
    oof_a = pd.read_csv(out / "oof.csv", keep_default_na=False)
    index = {str(ds.abspath(p)): i for i, p in enumerate(ds.rows("train")["path"])}
    y = ds.label_matrix("train")[[index[p] for p in oof_a["path"]]]
    _noisy(oof_a, y, 1).to_csv(tmp_path / "oof_b.csv", index=False)
    test = pd.read_csv(test_a, keep_default_na=False)
    _noisy(test, ds.label_matrix("test"), 2).to_csv(tmp_path / "test_b.csv", index=False)
    fit = f"{out / 'oof.csv'},{tmp_path / 'oof_b.csv'}"
    args = [test_a, tmp_path / "test_b.csv", "-o", tmp_path / "blend.csv"]
    result = invoke("blend", *args, "--fit", fit, "--truth", data, "--threshold", "f2")
    assert result.exit_code == 0, result.output
    assert "thresholds (f2, fitted on the OOF blend)" in result.stderr
    got = pd.read_csv(tmp_path / "blend.csv", keep_default_na=False)
    assert list(got.columns) == ["path", "labels", *(f"p_{c}" for c in LABELS)]
    assert got["path"].tolist() == test["path"].tolist()
    oof = [read_table(out / "oof.csv"), read_table(tmp_path / "oof_b.csv")]
    fitted = fit_multilabel_blend(oof, y, "mean", "f2")
    assert 0 < fitted["weights"][1] < 1  # the noisy second model earns a share
    p_oof = mls.temper(blend_probabilities([t.proba for t in oof], fitted["weights"], "mean"),
                       fitted["temperature"])  # fmt: skip
    np.testing.assert_allclose(fitted["thresholds"], mls.fit_thresholds(p_oof, y, "f2"), atol=1e-6)
    tables = [read_table(test_a), read_table(tmp_path / "test_b.csv")]
    mean = sum(w * t.proba for w, t in zip(fitted["weights"], tables, strict=True))
    p = mls.temper(mean, fitted["temperature"])
    np.testing.assert_allclose(got[[f"p_{c}" for c in LABELS]].to_numpy(), p, atol=2e-6)
    decided = [" ".join(c for c, on in zip(LABELS, row, strict=True) if on)
               for row in p >= fitted["thresholds"]]  # fmt: skip
    assert got["labels"].tolist() == decided
    # Without the OOF predictions, with rank, or mixed with single-label files: one line.
    one_line_error(invoke("blend", *args), "multi-label", "--fit")
    one_line_error(invoke("blend", *args, "--fit", fit, "--truth", data, "--method", "rank"),
                   "rank", "multi-label")  # fmt: skip
    single = tmp_path / "single.csv"
    single.write_text("path,label,confidence,p_a,p_b\nx.png,a,0.9,0.9,0.1\n")
    one_line_error(invoke("blend", test_a, single), "single.csv", "single-label")


def test_multilabel_blend_methods_are_the_binary_ones_per_label():
    from imgkit.evaluate.blend_multilabel import blend_probabilities

    p1 = np.array([[0.9, 0.2], [0.4, 0.7]])
    p2 = np.array([[0.6, 0.1], [0.8, 0.5]])
    w = np.array([0.75, 0.25])
    np.testing.assert_allclose(blend_probabilities([p1, p2], w, "mean"), 0.75 * p1 + 0.25 * p2)
    g = p1**0.75 * p2**0.25
    expected = g / (g + (1 - p1) ** 0.75 * (1 - p2) ** 0.25)
    np.testing.assert_allclose(blend_probabilities([p1, p2], w, "geometric"), expected)
