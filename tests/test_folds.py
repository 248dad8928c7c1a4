"""Folds in the dataset (prep --folds), a fold's run (train --fold) and pseudo-labels."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest
from cli_helpers import invoke, one_line_error
from conftest import make_class_folder
from tiny_data import make_folded_dataset

from imgkit.data.dataset import Dataset
from imgkit.data.folds import assign_folds, fold_count, fold_view
from imgkit.errors import BadDatasetError, BadInputError


def test_folds_are_stratified_balanced_and_keep_groups_whole():
    labels = ["a"] * 60 + ["b"] * 30 + [None] * 5
    groups = [f"g{i // 3}" for i in range(95)]
    folds = assign_folds(labels, 5, seed=1, groups=groups)
    assert folds[-5:] == [None] * 5
    by_fold = Counter((f, lab) for f, lab in zip(folds, labels, strict=True) if f)
    assert all(by_fold[(k, "a")] == 12 and by_fold[(k, "b")] == 6 for k in range(1, 6))
    for g in set(groups[:90]):
        assert len({folds[i] for i in range(90) if groups[i] == g}) == 1
    assert folds == assign_folds(labels, 5, seed=1, groups=groups)
    assert folds != assign_folds(labels, 5, seed=2, groups=groups)


def test_too_few_groups_for_the_folds_is_one_clear_error():
    with pytest.raises(BadInputError, match="--folds 4: only 3"):
        assign_folds(["a", "b", "a"], 4, seed=0)


def test_prep_folds_from_images_and_from_a_dataset_without_reading_images(tmp_path):
    photos = make_class_folder(tmp_path / "photos", per_class=10)
    assert invoke("prep", photos, "-o", tmp_path / "d5", "--folds", "5").exit_code == 0
    ds = Dataset.load(tmp_path / "d5")
    assert fold_count(ds) == 5 and ds.info["folds"] == 5 and set(ds.manifest["split"]) == {"train"}
    assert ds.manifest.groupby("fold")["label"].count().tolist() == [6] * 5

    plain = tmp_path / "plain"
    assert invoke("prep", photos, "-o", plain, "--val", "0.2", "--test", "0.2").exit_code == 0
    test_rows = Dataset.load(plain).rows("test")["path"].tolist()
    # The images are not read again: one deleted after prep does not matter.
    (photos / "birds" / "0.png").unlink()
    result = invoke("prep", plain, "--folds", "3", "-o", tmp_path / "d3")
    assert result.exit_code == 0, result.output
    d3 = Dataset.load(tmp_path / "d3")
    assert fold_count(d3) == 3 and "val" not in d3.splits()
    assert {str(d3.abspath(p).resolve()) for p in d3.rows("test")["path"]} == {
        str(plain.joinpath(p).resolve()) for p in test_rows
    }

    one_line_error(invoke("prep", plain, "--folds", "3", "-o", plain), "already exists")
    result = invoke("prep", plain, "--folds", "3", "-o", plain, "--overwrite")
    assert result.exit_code == 0, result.output
    assert fold_count(Dataset.load(plain)) == 3
    assert not [p for p in plain.iterdir() if p.name.startswith(".")]


def test_a_fold_view_validates_on_its_fold_and_trains_on_the_rest(tmp_path):
    ds = make_folded_dataset(tmp_path / "f", n=30, folds=3)
    view = fold_view(ds, 2)
    val, train = view.rows("val"), view.rows("train")
    assert set(val["fold"]) == {"2"} and "2" not in set(train["fold"])
    assert len(val) + len(train) == 30 and view.hash != ds.hash
    pool = ds.arrays("train", (12, 12), 1)
    np.testing.assert_array_equal(view.arrays("val", (12, 12), 1), pool[val.index.to_numpy()])
    assert len(view.arrays("test", (12, 12), 1)) == 12
    with pytest.raises(BadDatasetError, match="folds 1..3"):
        fold_view(ds, 4)


def test_a_fold_reads_its_rows_from_the_cache_instead_of_copying_them(tmp_path):
    # IDC-sized data (277k images) must not be copied per fold: getting a fold's train
    # and val images allocates next to nothing; each batch reads only its own rows.
    import tracemalloc

    ds = make_folded_dataset(tmp_path / "f", n=600, folds=3)
    rng = np.random.default_rng(0)
    ds.store_arrays("train", rng.integers(0, 256, (600, 48, 48, 3), dtype=np.uint8))
    size = ((48, 48), 3)
    view = fold_view(ds, 1)
    tracemalloc.start()
    train, val = view.arrays("train", *size), view.arrays("val", *size)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < (train.nbytes + val.nbytes) / 20, peak
    pool = ds.arrays("train", *size)
    where = view.positions["train"]
    rows = np.array([5, 17, 300])
    np.testing.assert_array_equal(train[rows], pool[where[rows]])
    np.testing.assert_array_equal(train[3:9, ..., 0], pool[where[3:9], ..., 0])
    np.testing.assert_array_equal(train[7], pool[where[7]])
    assert len(train) + len(val) == 600 and train.shape[1:] == pool.shape[1:]


def test_train_fold_misuse_is_one_line(tmp_path):
    make_folded_dataset(tmp_path / "f", n=30, folds=3)
    args = ["--model", "small-cnn", "--epochs", "1", "--size", "12"]
    one_line_error(
        invoke("train", tmp_path / "f", "-o", tmp_path / "r", "--fold", "4", *args),
        "--fold 4",
        "folds 1..3",
    )
    photos = make_class_folder(tmp_path / "photos")
    assert invoke("prep", photos, "-o", tmp_path / "plain").exit_code == 0
    one_line_error(
        invoke("train", tmp_path / "plain", "-o", tmp_path / "r", "--fold", "1", *args),
        "has no folds",
        "--folds K",
    )


def test_pseudo_labels_train_in_every_fold_and_are_never_validated(tmp_path):
    ds = make_folded_dataset(tmp_path / "f", n=30, folds=3)
    unlabeled = make_class_folder(tmp_path / "new", {"x": (200, 200, 200)}, per_class=4)
    files = sorted(str(p) for p in unlabeled.rglob("*.png"))
    preds = pd.DataFrame(
        {
            "path": files,
            "label": ["bright", "dim", "dim", "bright"],
            "confidence": [0.99, 0.97, 0.6, 0.96],
        }
    )
    preds.to_csv(tmp_path / "preds.csv", index=False)
    usage = invoke("prep", tmp_path / "preds.csv", "--min-confidence", "0.9", "-o", tmp_path / "p")
    assert usage.exit_code == 2 and "--min-confidence goes with --pseudo" in usage.stderr
    result = invoke(
        "prep", ds.root, tmp_path / "preds.csv", "--pseudo", "--min-confidence", "0.95",
        "-o", tmp_path / "p",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = Dataset.load(tmp_path / "p")
    pseudo = out.manifest[out.manifest["pseudo"] == "1"]
    assert len(pseudo) == 3 and set(pseudo["fold"]) == {""} and set(pseudo["split"]) == {"train"}
    assert fold_count(out) == 3 and out.info["pseudo"] == 3
    for k in (1, 2, 3):
        view = fold_view(out, k)
        assert set(view.rows("val")["pseudo"]) == {""}
        assert (view.rows("train")["pseudo"] == "1").sum() == 3
    bad = pd.DataFrame({"path": files[:1], "label": ["zebra"], "confidence": [1.0]})
    bad.to_csv(tmp_path / "bad.csv", index=False)
    one_line_error(
        invoke("prep", ds.root, tmp_path / "bad.csv", "--pseudo", "-o", tmp_path / "q"),
        "bad.csv",
        "zebra",
    )


def test_a_fold_streamed_from_the_cache_trains_as_one_held_in_memory(tmp_path, monkeypatch):
    # Too big for memory, a fold's batches are read from the cache's rows: the same
    # batches, so the same model and val scores as the fold held in RAM.
    from imgkit.train import trainer

    ds = make_folded_dataset(tmp_path / "f", n=30, folds=3)
    args = {"model": "small-cnn", "epochs": 2, "batch_size": 8, "input_size": (12, 12)}
    kept = trainer.train(ds.root, tmp_path / "ram", fold=2, **args)
    monkeypatch.setattr(trainer, "IN_MEMORY_LIMIT", 0)
    streamed = trainer.train(ds.root, tmp_path / "mapped", fold=2, **args)
    assert streamed["metrics"]["val"] == pytest.approx(kept["metrics"]["val"], rel=1e-5)


def test_a_fold_run_reads_its_own_fold_as_val_and_the_other_folds_as_train(tmp_path):
    """predict/eval/export of fold 2's bundle: --split val is fold 2 (what it validated
    on), train the other folds; a record of another dataset or no fold leaves ds as is."""
    from types import SimpleNamespace

    from imgkit.data.folds import as_trained
    from imgkit.infer.plan import plan_inputs

    ds = make_folded_dataset(tmp_path / "f", n=30, folds=3)
    record = {"path": str(ds.root), "hash": fold_view(ds, 2).hash, "fold": 2}
    record["base_hash"] = ds.hash
    assert as_trained(ds, record).hash == record["hash"]
    assert as_trained(ds, {**record, "base_hash": "other"}) is ds
    assert as_trained(ds, {k: v for k, v in record.items() if k != "fold"}) is ds
    bundle = SimpleNamespace(task="classification", meta={"dataset": record})
    fold2 = {ds.abspath(p) for p in ds.rows("train").query("fold == '2'")["path"]}
    val = {item.path for item in plan_inputs(bundle, [ds.root], split="val")}
    train = {item.path for item in plan_inputs(bundle, [ds.root], split="train")}
    assert val == fold2 and len(val) + len(train) == 30 and not val & train
