"""Seed 003 (breast histopathology, IDC): the patient layout, patient-level splits,
--group-by, decision thresholds, VGG16 and its preprocessing, tune, the pipeline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from idc_data import make_idc
from test_pipelines import run_script
from tiny_data import make_dataset

from imgkit.commands import cli
from imgkit.data.dataset import Dataset
from imgkit.data.grouping import compile_group_by, regroup, relative_name, split_balance
from imgkit.data.prep import prepare
from imgkit.data.prep_options import PrepOptions
from imgkit.data.records import Record
from imgkit.data.sources import find_reader
from imgkit.data.splits import assign_splits
from imgkit.errors import BadInputError
from imgkit.infer.predict import prediction_frame
from imgkit.train.thresholds import (
    apply_threshold,
    choose_threshold,
    parse_threshold,
    raw_threshold,
    score_at,
)


def _patients_per_split(ds: Dataset) -> dict[str, set[str]]:
    m = ds.manifest
    return {s: set(m.loc[m["split"] == s, "group"].astype(str)) for s in m["split"].unique()}


# --- the IDC layout ---------------------------------------------------------------------


def test_idc_layout_labels_groups_and_strays(tmp_path):
    src = make_idc(tmp_path / "IDC")
    # Mislabeled: in folder 0, but the name says class1.
    wrong = src / "10001" / "0" / "10001_idx5_x999_y0_class1.png"
    shutil.copy(next((src / "10001" / "0").iterdir()), wrong)
    (src / "10003" / "1").mkdir()  # an empty class folder (10003 is single-class)
    (src / "10002" / "1" / "notes.txt").write_text("not an image")
    (src / "10002" / "0" / ".DS_Store").write_text("")
    (src / "README.txt").write_text("a stray at the top")
    assert find_reader(str(src)).NAME == "idc"

    info = prepare([str(src)], tmp_path / "data", PrepOptions(val=0.2, test=0.2, seed=0))
    rejects = pd.read_csv(tmp_path / "data" / "rejects.csv")
    names = rejects["path"].map(lambda p: p.split("/")[-1])
    reasons = dict(zip(names, rejects["reason"], strict=True))
    assert reasons["10001_idx5_x999_y0_class1.png"].startswith("label mismatch")
    assert "folder '0'" in reasons["10001_idx5_x999_y0_class1.png"]
    assert "not an image file type" in reasons["notes.txt"]
    assert "no images" in reasons["1"]  # 10003/1
    assert "README.txt" in reasons
    assert any("empty class folder" in w for w in info["warnings"])
    assert any("disagree" in w for w in info["warnings"])

    ds = Dataset.load(tmp_path / "data")
    assert ds.classes == ["0", "1"]
    assert set(ds.manifest["group"].astype(str)) == {f"100{i:02d}" for i in range(1, 11)}
    by_split = _patients_per_split(ds)
    splits = list(by_split)
    for i, a in enumerate(splits):  # no patient in two splits
        for b in splits[i + 1 :]:
            assert not by_split[a] & by_split[b]
    assert "10003" in set().union(*by_split.values())  # the one-class patient is taken
    saved = json.loads((tmp_path / "data" / "dataset.json").read_text())
    assert set(saved["class_fractions"]) == set(saved["counts"])
    for fractions in saved["class_fractions"].values():
        assert sum(fractions.values()) == pytest.approx(1.0, abs=1e-3)
    assert sum(saved["groups"].values()) == 10


def test_a_patch_level_random_split_leaks_patients_but_prep_does_not(tmp_path):
    src = make_idc(tmp_path / "IDC")
    prepare([str(src)], tmp_path / "data", PrepOptions(val=0.2, test=0.2, seed=0))
    m = Dataset.load(tmp_path / "data").manifest
    groups = m["group"].astype(str).tolist()
    # What a patch-level split (no groups) does with the same patches and seed.
    naive = assign_splits(m["label"].astype(str).tolist(), 0.2, 0.2, seed=0)
    pairs = list(zip(naive, groups, strict=True))
    leaked = {g for g in groups if len({s for s, h in pairs if h == g}) > 1}
    assert leaked, "a patch-level split puts patients on both sides"
    kept = {g for g in groups if m.loc[m["group"].astype(str) == g, "split"].nunique() > 1}
    assert not kept


def test_group_by_regex_keeps_groups_together_and_counts_strays(tmp_path, make_image):
    src = tmp_path / "photos"
    for label in ("a", "b"):
        for p in range(4):
            for k in range(3):
                make_image(src / label / f"p{p}{label}_shot{k}.png", size=(8, 8))
    make_image(src / "a" / "loose.png", size=(8, 8))
    result = CliRunner().invoke(
        cli,
        ["prep", str(src), "-o", str(tmp_path / "data"), "--val", "0.25", "--test", "0.25",
         "--group-by", r"/(p\d[ab])_"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "matched no group in 1 of" in result.output
    m = Dataset.load(tmp_path / "data").manifest
    grouped = m[m["group"].fillna("").astype(str) != ""]  # the stray has no group
    assert grouped.groupby("group")["split"].nunique().max() == 1
    assert grouped["group"].nunique() == 8
    bad = CliRunner().invoke(cli, ["prep", str(src), "-o", str(tmp_path / "d2"), "--group-by", "("])
    assert bad.exit_code == 1 and "not a valid regular expression" in bad.output


def test_regroup_takes_the_first_group_or_the_whole_match(tmp_path):
    src, work = tmp_path.resolve() / "src", tmp_path.resolve() / "data"
    # Names relative to the source, or to the dataset folder for files prep extracted.
    assert relative_name(str(src / "p1" / "a.png"), src, work) == "p1/a.png"
    assert relative_name(str(work / "images" / "b.png"), src, work) == "images/b.png"
    assert relative_name("images/c.png", src, work) == "images/c.png"
    assert relative_name("/elsewhere/d.png", src, work) == "/elsewhere/d.png"

    records = [
        Record(str(src / "p1" / "a.png"), "x", group="old"),
        Record(str(src / "p2" / "b.png"), "y"),
        Record(str(src / "loose.png"), "x", group="old"),
    ]
    out, unmatched = regroup(records, compile_group_by(r"^(p\d)/"), src, work)
    assert [r.group for r in out] == ["p1", "p2", None] and unmatched == 1
    assert [(r.path, r.label) for r in out] == [(r.path, r.label) for r in records]
    whole, _ = regroup(records[:1], compile_group_by(r"p\d"), src, work)
    assert whole[0].group == "p1"  # no capture group: the whole match
    optional, _ = regroup(records[:1], compile_group_by(r"(q)?p\d"), src, work)
    assert optional[0].group == "p1"  # a group that took no part: the whole match too


def test_split_balance_by_hand():
    records = [
        Record("1.png", "a", group="g1"),  # no fixed split: train
        Record("2.png", "a", group="g1", split="train"),
        Record("3.png", "b", split="train"),  # no group: a group of its own
        Record("4.png", "b", group="g2", split="test"),
        Record("5.png", None, split="unlabeled"),
    ]
    assert split_balance(records) == {
        "class_fractions": {"test": {"b": 1.0}, "train": {"a": 0.6667, "b": 0.3333}},
        "groups": {"test": 1, "train": 2, "unlabeled": 1},
    }
    assert split_balance([Record("1.png", "a")]) == {"class_fractions": {"train": {"a": 1.0}}}


# --- thresholds -------------------------------------------------------------------------


def test_thresholds_choose_and_change_labels():
    p = np.array([0.05, 0.1, 0.2, 0.3, 0.35, 0.4, 0.6, 0.9])
    y = np.array([0, 0, 0, 1, 1, 1, 0, 1])
    t, f1 = choose_threshold(p, y, "f1")
    assert 0.2 < t <= 0.3 and f1 == pytest.approx(2 * 4 / (2 * 4 + 1))
    assert score_at(p, y, 0.5, "f1") < f1
    tb, bal = choose_threshold(p, y, "balanced")
    assert bal == pytest.approx((4 / 4 + 3 / 4) / 2)
    assert apply_threshold(p, t).tolist() == [0, 0, 0, 1, 1, 1, 1, 1]
    assert parse_threshold("auto") == ("f1", None)
    assert parse_threshold("none") == (None, None)
    assert parse_threshold("0.3") == (None, 0.3)
    with pytest.raises(BadInputError):
        parse_threshold("1.5")
    with pytest.raises(BadInputError, match="both classes"):
        choose_threshold(p, np.zeros(8), "f1")

    proba = np.stack([1 - p, p], axis=1)
    plain = prediction_frame([f"{i}.png" for i in range(8)], proba, ["0", "1"])
    moved = prediction_frame([f"{i}.png" for i in range(8)], proba, ["0", "1"], threshold=t)
    assert plain["label"].tolist() == ["0"] * 6 + ["1", "1"]
    assert moved["label"].tolist() == ["0", "0", "0", "1", "1", "1", "1", "1"]
    # The confidence stays the probability of the chosen label.
    assert moved["confidence"].iloc[3] == pytest.approx(0.3)
    assert moved["confidence"].iloc[0] == pytest.approx(0.95)


def test_raw_threshold_gives_the_same_labels_without_the_temperature():
    from imgkit.train.calibration import temper

    rng = np.random.default_rng(0)
    p = rng.uniform(0.01, 0.99, 200)
    proba = np.stack([1 - p, p], axis=1)
    tempered = temper(proba, 2.5)[:, 1]
    t = 0.37
    assert np.array_equal(tempered >= t, p >= raw_threshold(t, 2.5))


def test_parse_threshold_every_form_and_the_open_interval():
    assert parse_threshold(None) == (None, None)
    assert parse_threshold(" NONE ") == (None, None)
    assert parse_threshold("F1") == ("f1", None)
    assert parse_threshold("Balanced") == ("balanced", None)
    assert parse_threshold(0.25) == (None, 0.25)
    for bad in ("0", "1", "-0.2", "nan", "high"):
        with pytest.raises(BadInputError, match="--threshold must be"):
            parse_threshold(bad)


def test_threshold_scores_at_the_edges_by_hand():
    # A probability equal to the threshold is a positive (>=), as apply_threshold says.
    assert apply_threshold([0.3, 0.2999], 0.3).tolist() == [1, 0]
    assert score_at([0.3, 0.7], [1, 0], 0.3, "f1") == pytest.approx(2 / 3)
    assert score_at([0.9, 0.1], [1, 0], 0.5, "f1") == 1.0  # one true positive is enough
    assert score_at([0.1, 0.2], [0, 0], 0.5, "f1") == 0.0  # no positive at all: 0, not NaN
    # Balanced accuracy = (TPR + TNR) / 2, each 0 when its class is absent.
    assert score_at([0.2, 0.8], [0, 0], 0.5, "balanced") == 0.25
    assert score_at([0.8, 0.2], [1, 1], 0.5, "balanced") == 0.25
    assert score_at([0.8, 0.2, 0.3], [1, 1, 0], 0.5, "balanced") == 0.75  # 1/2 and 1
    assert score_at([0.8, 0.6, 0.3], [1, 0, 0], 0.5, "balanced") == 0.75  # 1 and 1/2


def test_choose_threshold_candidates_and_ties_by_hand():
    # Midpoints between distinct probabilities: 0.3 separates these exactly.
    assert choose_threshold([0.1, 0.2, 0.4, 0.7], [0, 0, 1, 1]) == (pytest.approx(0.3), 1.0)
    # Below the smallest (half of it): every image positive is the best F1 here.
    assert choose_threshold([0.2, 0.3, 0.4], [1, 1, 0]) == (pytest.approx(0.1), 0.8)
    # A flat optimum: 0.5 itself is a candidate, and ties go to the one nearest 0.5.
    assert choose_threshold([0.1, 0.3, 0.8, 0.9], [0, 0, 1, 1]) == (0.5, 1.0)
    assert choose_threshold([0.1, 0.2, 0.6, 0.9], [0, 0, 1, 1]) == (0.5, 1.0)
    # A threshold of 0 (everything positive) is never offered: 0.5 is the only candidate.
    assert choose_threshold([0.0, 0.0, 1.0], [1, 1, 0]) == (0.5, 0.0)
    with pytest.raises(BadInputError, match="metric must be one of f1, balanced"):
        choose_threshold([0.1, 0.9], [0, 1], "accuracy")
    for p, y in (([], []), ([0.1, 0.9], [0, 1, 1])):
        with pytest.raises(BadInputError, match="as many probabilities as labels"):
            choose_threshold(p, y)


def test_raw_threshold_stays_finite_at_0_and_1():
    for t in (0.0, 1.0):
        assert 0 < raw_threshold(t, 1.0) < 1  # clamped to [1e-12, 1 - 1e-12]
        assert 0 <= raw_threshold(t, 5.0) <= 1  # not NaN
    assert raw_threshold(0.5, 3.0) == 0.5


# --- VGG16 ------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [3, 1])
def test_vgg16_preprocessing_equals_keras_and_loads_in_safe_mode(channels, tmp_path):
    import keras

    from imgkit.models import create_model, get_spec

    model = create_model("vgg16", 2, (32, 32), channels, weights="none")
    x = np.random.default_rng(0).integers(0, 256, (3, 32, 32, channels)).astype("float32")
    inside = keras.Model(model.inputs, model.get_layer("caffe").output).predict(x, verbose=0)
    rgb = np.repeat(x, 3, axis=-1) if channels == 1 else x
    expected = keras.applications.vgg16.preprocess_input(rgb.copy())
    np.testing.assert_allclose(inside, expected, atol=1e-4)
    assert not model.get_layer("caffe").trainable
    assert not model.get_layer("backbone").trainable_weights  # frozen by default
    assert model.output.shape[-1] == 1
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
    pixels = get_spec("vgg16").pixels
    assert pixels["mode"] == "caffe" and pixels["mean"] == [103.939, 116.779, 123.68]


def test_vgg16_fine_tune_last_and_weights_from_a_bundle(tmp_path):
    from imgkit.models import create_model

    first = create_model("vgg16", 2, (32, 32), 3, weights="none")
    first.save(tmp_path / "model.keras")
    second = create_model(
        "vgg16", 2, (32, 32), 3, weights=str(tmp_path / "model.keras"), fine_tune_last=4
    )
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    trainable = [w.path for w in second.get_layer("backbone").trainable_weights]
    assert trainable and all("block5" in p for p in trainable)
    other = create_model("vgg16", 3, (32, 32), 3, weights="none")
    other.save(tmp_path / "three.keras")
    with pytest.raises(BadInputError, match="same shape"):
        create_model("vgg16", 2, (32, 32), 3, weights=str(tmp_path / "three.keras"))


@pytest.fixture(scope="module")
def vgg16_run(tmp_path_factory):
    """One VGG16 run (1 channel, 32 px, an epoch) with a threshold and a 24-unit head."""
    root = tmp_path_factory.mktemp("vgg16")
    make_dataset(root / "data", n_train=24, n_val=12, n_test=8, size=32)
    # vgg16 takes 1 channel (grey -> BGR): no 3-channel variant is needed.
    result = CliRunner().invoke(
        cli,
        ["train", str(root / "data"), "-o", str(root / "run"), "--model", "vgg16", "--weights",
         "none", "--channels", "1", "--size", "32", "--epochs", "1", "--batch-size", "8",
         "--class-weight", "balanced", "--threshold", "auto", "--head-units", "24"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return root / "data", root / "run"


def test_vgg16_trains_with_a_threshold_and_predict_uses_it(vgg16_run):
    from imgkit.bundle import load_bundle, read_meta
    from imgkit.infer.predict import Predictor

    data, run = vgg16_run
    meta = read_meta(run)
    assert meta["output"] == "sigmoid" and meta["threshold_metric"] == "f1"
    assert 0 < meta["threshold"] < 1 and "f1_at_threshold" in meta["metrics"]["val"]
    assert meta["transfer"]["features_cached"] is True
    assert meta["pixels"]["mode"] == "caffe"
    bundle = load_bundle(run)
    predictor = Predictor(bundle)
    assert predictor.threshold == pytest.approx(meta["threshold"])
    x = Dataset.load(data).arrays("test", (32, 32), 1, "stretch")
    frame = predictor.frame([str(i) for i in range(len(x))], np.asarray(x))
    p1 = frame["p_dim"].to_numpy()
    assert (frame["label"] == np.where(p1 >= meta["threshold"], "dim", "bright")).all()


# --- tune -------------------------------------------------------------------------------


def test_tune_writes_trials_and_best(tmp_path):
    make_dataset(tmp_path / "data", n_train=24, n_val=8, n_test=0)
    result = CliRunner().invoke(
        cli,
        ["tune", str(tmp_path / "data"), "-o", str(tmp_path / "tune"), "--model", "small-cnn",
         "--grid", "lr=1e-3,1e-2", "--grid", "dropout=0,0.5", "--trials", "3", "--random",
         "--epochs", "1", "--batch-size", "8", "--size", "12"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    trials = pd.read_csv(tmp_path / "tune" / "trials.csv")
    assert len(trials) == 3 and set(trials["status"]) == {"ok"}
    assert {"lr", "dropout", "score", "val_log_loss", "path"} <= set(trials.columns)
    assert trials["score"].is_monotonic_increasing  # log loss: best (lowest) first
    best = json.loads((tmp_path / "tune" / "best" / "imgkit.json").read_text())
    assert best["metrics"]["val"]["log_loss"] == pytest.approx(trials["score"].iloc[0])
    assert result.output.strip().splitlines()[-1].endswith("best")
    bad = CliRunner().invoke(
        cli, ["tune", str(tmp_path / "data"), "-o", str(tmp_path / "t2"), "--model", "small-cnn",
              "--grid", "colour=red"],
    )  # fmt: skip
    assert bad.exit_code == 1 and "unknown setting" in bad.output


# --- the pipeline -----------------------------------------------------------------------


def test_histopathology_script_end_to_end(tmp_path):
    src = make_idc(tmp_path / "IDC")
    work = tmp_path / "work"
    # Unweighted classes (TRAIN_ARGS come after the script's --class-weight balanced):
    # one epoch then leaves P(1) of every patch under 0.5, the positives' above the
    # negatives', so the labels are the threshold's work. (Balanced weights put the
    # classes either side of 0.5 here, where any threshold mistake would go unseen.)
    proc = run_script(
        "histopathology.sh", tmp_path, WORK=str(work), IDC=str(src), WEIGHTS="none",
        SIZE="32", EPOCHS="1", VAL="0.3", TEST="0.3",
        TRAIN_ARGS="--batch-size 16 --class-weight none",
    )  # fmt: skip
    metrics = json.loads((work / "eval" / "metrics.json").read_text())
    assert set(metrics) == {
        "predictions", "truth", "n", "classes", "accuracy", "macro_precision", "macro_recall",
        "macro_f1", "weighted_f1", "log_loss", "balanced_accuracy", "positive_class", "roc_auc",
        "pr_auc", "per_class", "confusion", "unmatched",
    }  # fmt: skip
    assert metrics["classes"] == ["0", "1"] and metrics["positive_class"] == "1"
    assert metrics["unmatched"] == 0
    # Purple nuclei against pink stroma: even one epoch ranks the patients' patches.
    assert metrics["roc_auc"] >= 0.9 and metrics["balanced_accuracy"] >= 0.8

    # Recompute every number from test_preds.csv, the truth being each patch's folder.
    preds = pd.read_csv(work / "test_preds.csv", dtype={"label": str})
    assert len(preds) == len(Dataset.load(work / "data").rows("test")) == metrics["n"]
    truth = preds["path"].map(lambda p: Path(p).parent.name).to_numpy()
    said = preds["label"].to_numpy()
    confusion = [[int(np.sum((truth == t) & (said == s))) for s in "01"] for t in "01"]
    assert metrics["confusion"] == confusion
    (tn, fp), (fn, tp) = confusion
    recall = {"0": tn / (tn + fp), "1": tp / (tp + fn)}
    precision = {"0": tn / (tn + fn), "1": tp / (tp + fp)}
    for c in "01":
        f1 = 2 * precision[c] * recall[c] / (precision[c] + recall[c])
        assert metrics["per_class"][c] == {
            "precision": pytest.approx(precision[c]), "recall": pytest.approx(recall[c]),
            "f1": pytest.approx(f1), "support": int(np.sum(truth == c)),
        }  # fmt: skip
    assert metrics["accuracy"] == pytest.approx((tn + tp) / len(preds))
    assert metrics["balanced_accuracy"] == pytest.approx((recall["0"] + recall["1"]) / 2)
    p1 = preds["p_1"].to_numpy()
    pos, neg = p1[truth == "1"], p1[truth == "0"]
    pairs = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    assert metrics["roc_auc"] == pytest.approx(pairs.mean())
    # Average precision: one step per distinct score, highest first (ties move together).
    called = [p1 >= t for t in np.unique(p1)[::-1]]
    hits = np.array([np.sum(c & (truth == "1")) for c in called])
    steps = np.diff(np.r_[0, hits]) / len(pos)
    assert metrics["pr_auc"] == pytest.approx(np.sum(steps * hits / [c.sum() for c in called]))
    p_true = np.where(truth == "1", p1, preds["p_0"].to_numpy())
    assert metrics["log_loss"] == pytest.approx(-np.mean(np.log(p_true)), rel=1e-4)
    meta = json.loads((work / "run" / "imgkit.json").read_text())
    assert meta["train_args"]["class_weight"] == "none"
    assert proc.stdout.strip().splitlines()[-1].endswith("metrics.json")

    # Patients, not patches, were split: each patient's patches sit in one split.
    by_split = _patients_per_split(Dataset.load(work / "data"))
    assert set(by_split) == {"train", "val", "test"}
    assert sum(map(len, by_split.values())) == len(set().union(*by_split.values())) == 10

    # The threshold (--threshold auto: F1 on val) is the one the val predictions give,
    # and test labels are P(1) against it.
    assert meta["threshold_metric"] == "f1"
    val_csv = work / "val_preds.csv"
    args = ["predict", work / "run", work / "data", "--split", "val", "-o", val_csv]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    val = pd.read_csv(val_csv, dtype={"label": str})
    y_val = val["path"].map(lambda p: Path(p).parent.name == "1").to_numpy(int)
    chosen, best_f1 = choose_threshold(val["p_1"], y_val, "f1")
    assert meta["threshold"] == pytest.approx(chosen, abs=1e-5)
    assert meta["metrics"]["val"]["f1_at_threshold"] == pytest.approx(best_f1)
    assert (said == "1").tolist() == (p1 >= meta["threshold"]).tolist()
    assert p1.max() < 0.5 and (said == "1").any()  # argmax alone would call every patch 0


def test_dense_units_are_a_tunable_head_setting(vgg16_run, tmp_path):
    from imgkit.train.tune import parse_grid

    assert parse_grid(["dense_units=8,16"]) == {"head_units": [8, 16]}
    data, run = vgg16_run
    meta = json.loads((run / "imgkit.json").read_text())
    assert meta["train_args"]["head_units"] == 24
    import keras

    model = keras.saving.load_model(run / "model.keras", safe_mode=True)
    assert model.get_layer("head_dense").units == 24
    bad = CliRunner().invoke(
        cli,
        ["train", str(data), "-o", str(tmp_path / "r2"), "--model", "small-cnn",
         "--head-units", "24"],
    )  # fmt: skip
    assert bad.exit_code == 1 and "no --head-units option" in bad.output
