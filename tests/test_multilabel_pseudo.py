"""Multi-label pseudo-labels (``prep DATA preds.csv --pseudo``) and the reliability
diagram of ``report --truth`` for a multi-label bundle.

The images and the hand-made bundle are those of ``test_multilabel_more``: a coloured
bar per label, each label's probability following its bar, so ``predict`` writes real
multi-label CSVs in a second; a few probabilities are then set by hand to make rows
that are unsure of one label or sure of none.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import invoke, one_line_error
from test_multilabel import make_images, write_csv
from test_multilabel_more import CLASSES, save_bundle

from imgkit.data.dataset import Dataset, label_set
from imgkit.data.folds import fold_view

P = 0.9  # --min-confidence


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A multi-label dataset with val and test splits, its bundle, and the bundle's
    predictions of 16 new images (predict's CSV: path,labels,p_<label>...)."""
    root = tmp_path_factory.mktemp("mlpseudo")
    items = make_images(root / "img", 30, seed=5)
    rows = [(f"img/{n}.png", " ".join(t)) for n, t in items]
    rows[3] = (rows[3][0], "")  # an image with no label (--allow-empty)
    csv = write_csv(root / "t.csv", "path,labels", rows)
    data = root / "data"
    result = invoke("prep", csv, "-o", data, "--val", "0.2", "--test", "0.2", "--allow-empty")
    assert result.exit_code == 0, result.output
    run = save_bundle(root / "run", data)
    make_images(root / "new", 16, seed=6)
    preds = root / "preds.csv"
    result = invoke("predict", run, root / "new", "-o", preds)
    assert result.exit_code == 0, result.output
    return root, data, run, preds


def _edited(world, tmp_path) -> tuple[pd.DataFrame, dict]:
    """Predict's CSV with made-up rows: one unsure of green alone, one sure of no label,
    one of a val image and one of a test image (sure of every label). Its path, and
    the label set each row sure of every label must get (None: not taken)."""
    root, data, _, preds = world
    df = pd.read_csv(preds, dtype=str, keep_default_na=False)
    df.loc[0, ["p_blue", "p_green", "p_red"]] = ["0.01", "0.5", "0.99"]
    df.loc[1, ["p_blue", "p_green", "p_red"]] = ["0.02", "0.05", "0.1"]  # 0.1 is 1 - P
    df.loc[2, ["p_blue", "p_green", "p_red"]] = ["0.95", "0.03", "0.9"]  # 0.9 is P
    m = Dataset.load(data).manifest
    listed = [str(data / m[m["split"] == s]["path"].iloc[0]) for s in ("val", "test")]
    extra = pd.DataFrame(
        {"path": listed, "labels": "blue", "p_blue": "0.99", "p_green": "0.01", "p_red": "0.01"}
    )
    df = pd.concat([df, extra], ignore_index=True)
    df.to_csv(tmp_path / "edited.csv", index=False)
    proba = df[[f"p_{c}" for c in CLASSES]].astype(float).to_numpy()
    want = {}
    for path, p in zip(df["path"], proba, strict=True):
        sure = all(v >= P or v <= round(1 - P, 6) for v in p)
        want[path] = (
            " ".join(c for c, v in zip(CLASSES, p, strict=True) if v >= P) if sure else None
        )
    assert want[df["path"][0]] is None and want[df["path"][1]] == ""
    assert want[df["path"][2]] == "blue red"
    assert sum(v is None for v in want.values()) >= 2  # the bundle itself is unsure of some
    return tmp_path / "edited.csv", want


def _split_rows(ds: Dataset, split: str) -> list[tuple]:
    part = ds.manifest[ds.manifest["split"] == split]
    pairs = zip(part["path"], part["label"], strict=True)
    return sorted((ds.abspath(p).resolve(), t) for p, t in pairs)


def test_only_rows_sure_of_every_label_are_added_with_their_label_sets(world, tmp_path):
    root, data, _, _ = world
    csv, want = _edited(world, tmp_path)
    out = tmp_path / "p"
    result = invoke("prep", data, csv, "--pseudo", "--min-confidence", str(P), "-o", out)
    assert result.exit_code == 0, result.output
    ds, base = Dataset.load(out), Dataset.load(data)
    m = ds.manifest
    pseudo = m[m["pseudo"] == "1"]
    new = {p: w for p, w in want.items() if "/new/" in p}
    taken = {p: w for p, w in new.items() if w}  # sure of every label, at least one present
    pairs = zip(pseudo["path"], pseudo["label"], strict=True)
    got = {str(ds.abspath(p).resolve()): label for p, label in pairs}
    assert got == {str(Path(p).resolve()): w for p, w in taken.items()}
    assert set(pseudo["split"]) == {"train"} and ds.info["pseudo"] == len(taken)
    # Nothing lands in val or test: the val and test images listed stay as they were.
    for split in ("val", "test"):
        assert _split_rows(ds, split) == _split_rows(base, split)
        assert set(m[m["split"] == split]["pseudo"]) == {""}
    # Every pseudo label counts in dataset.json, per label.
    train = [s for p in pseudo["label"] for s in label_set(p)]
    base_train = [s for p in base.rows("train")["label"] for s in label_set(p)]
    for c in CLASSES:
        assert ds.info["counts"]["train"][c] == train.count(c) + base_train.count(c)
    reasons = pd.read_csv(out / "rejects.csv")["reason"]
    undecided = sum(w is None for w in new.values())
    assert reasons.str.startswith("skipped: pseudo-labels not all decided").sum() == undecided
    assert reasons.str.contains(r"green 0\.5\b").sum() == 1
    empty = sum(w == "" for w in new.values())
    assert reasons.str.startswith("skipped: pseudo-labels decided no label").sum() == empty
    assert reasons.str.contains("already listed").sum() == 2
    assert "not all decided" in result.stderr and "decided no label" in result.stderr

    # --allow-empty takes the image sure of no label, as an image with none.
    out = tmp_path / "e"
    result = invoke("prep", data, csv, "--pseudo", "--allow-empty", "-o", out)
    assert result.exit_code == 0, result.output
    m = Dataset.load(out).manifest
    taken = m[(m["pseudo"] == "1") & (m["label"] == "")]
    assert len(taken) == empty and set(taken["split"]) == {"train"}


def test_pseudo_labels_keep_the_folds_and_never_validate(world, tmp_path):
    root, data, _, _ = world
    csv, want = _edited(world, tmp_path)
    folded = tmp_path / "f"
    result = invoke("prep", data, "--folds", "3", "-o", folded)
    assert result.exit_code == 0, result.output
    before = Dataset.load(folded).manifest
    # The image with no label (--allow-empty) is labelled, with none: it gets a fold.
    assert (before[before["split"] != "test"]["fold"] != "").all()
    assert (before["label"] == "").sum() == 1
    out = tmp_path / "fp"
    result = invoke("prep", folded, csv, "--pseudo", "--allow-empty", "-o", out)
    assert result.exit_code == 0, result.output
    ds = Dataset.load(out)
    m = ds.manifest
    kept = m[m["pseudo"] != "1"]
    assert list(kept["fold"]) == list(before["fold"]) and list(kept["split"]) == list(
        before["split"]
    )
    pseudo = m[m["pseudo"] == "1"]
    assert len(pseudo) == sum(w is not None for p, w in want.items() if "/new/" in p)
    assert set(pseudo["fold"]) == {""} and ds.info["folds"] == 3
    for k in (1, 2, 3):
        view = fold_view(ds, k)
        assert set(view.rows("val")["pseudo"]) == {""}
        assert (view.rows("train")["pseudo"] == "1").sum() == len(pseudo)


def test_what_cannot_be_pseudo_labelled_says_so_in_one_line(world, tmp_path):
    root, data, _, preds = world
    single = tmp_path / "single.csv"
    single.write_text(f"path,label,confidence\n{root}/new/train_0.png,red,0.99\n")
    one_line_error(
        invoke("prep", data, single, "--pseudo", "-o", tmp_path / "a"),
        "single.csv", "classification predictions", "multilabel",
    )  # fmt: skip
    one_line_error(
        invoke("prep", data, preds, "--pseudo", "--min-confidence", "0.3", "-o", tmp_path / "b"),
        "--min-confidence 0.3", "at least 0.5",
    )  # fmt: skip
    other = pd.read_csv(preds, dtype=str, keep_default_na=False).rename(columns={"p_red": "p_x"})
    other.to_csv(tmp_path / "other.csv", index=False)
    one_line_error(
        invoke("prep", data, tmp_path / "other.csv", "--pseudo", "-o", tmp_path / "c"),
        "other.csv", "not the dataset's",
    )  # fmt: skip
    # Without a dataset, the predictions alone make one of their task.
    result = invoke("prep", preds, "--pseudo", "--min-confidence", "0.6", "-o", tmp_path / "d")
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "d" / "dataset.json").read_text())
    assert info["task"] == "multilabel" and set(info["classes"]) <= set(CLASSES)


# --- report: the reliability diagram --------------------------------------------------


def test_reliability_bins_added_by_chunks_equal_a_direct_computation():
    from imgkit.evaluate.plots import ReliabilityBins

    p = np.array([[0.05, 0.95], [0.15, 0.55], [0.62, 0.98], [0.12, 0.33], [1.0, 0.0]])
    y = np.array([[0, 1], [1, 0], [1, 1], [0, 1], [1, 0]])
    bins = ReliabilityBins()
    bins.add(p[:2], y[:2])
    bins.add(p[2:], y[2:])
    # By hand, bin by bin: 0.05 0.0 | 0.15 0.12 | 0.33 | 0.55 | 0.62 | 0.95 0.98 1.0
    by_hand = [(0.025, 0, 2), (0.135, 0.5, 2), (0.33, 1, 1), (0.55, 0, 1), (0.62, 1, 1),
               (2.93 / 3, 1, 3)]  # fmt: skip
    assert np.array(bins.rows()) == pytest.approx(np.array(by_hand))
    gaps = 2 * 0.025 + 2 * 0.365 + 0.67 + 0.55 + 0.38 + (3 - 2.93)
    assert bins.ece() == pytest.approx(gaps / 10)


def _tempered_back(p: np.ndarray, t: float) -> np.ndarray:
    logit = np.log(p / (1 - p))
    return 1 / (1 + np.exp(-t * logit))


def test_report_draws_the_pooled_reliability_diagram(world, tmp_path, monkeypatch):
    """Streamed a few rows at a time, the curves are the pooled ones computed at once:
    every (image, label) probability of the predictions against the truth, and the same
    given back the bundle's temperature (1.3)."""
    import imgkit.evaluate.report_multilabel as page
    from imgkit.evaluate.plots import ReliabilityBins
    from tests.test_report import _static, browser_check

    root, data, run, _ = world
    preds = tmp_path / "val.csv"
    result = invoke("predict", run, data, "--split", "val", "-o", preds)
    assert result.exit_code == 0, result.output
    monkeypatch.setattr(page, "CHUNK", 2)
    seen = {}
    draw = page._calibration

    def spy(curves, gallery):
        seen.update(curves)
        return draw(curves, gallery)

    monkeypatch.setattr(page, "_calibration", spy)
    out = tmp_path / "report"
    result = invoke("report", run, "-o", out, "--truth", data, "--predictions", preds)
    assert result.exit_code == 0, result.output

    df = pd.read_csv(preds, keep_default_na=False)
    m = Dataset.load(data).manifest
    labels = {Path(p).name: label_set(t) for p, t in zip(m["path"], m["label"], strict=True)}
    truth = np.array([[c in labels[Path(p).name] for c in CLASSES] for p in df["path"]])
    # An image with no label (--allow-empty) is scored, as a negative for every label.
    assert not truth.any(axis=1).all()
    proba = df[[f"p_{c}" for c in CLASSES]].to_numpy()
    before, after = seen["before the temperature"], seen["after (T = 1.300)"]
    for bins, p in ((after, proba), (before, _tempered_back(proba, 1.3))):
        direct = ReliabilityBins()
        direct.add(p.reshape(-1), truth.reshape(-1))
        assert np.array(bins.rows()) == pytest.approx(np.array(direct.rows()))
        assert int(bins.count.sum()) == truth.size
        edges = np.clip(np.floor(p.reshape(-1) * 10).astype(int), 0, 9)
        counts = np.bincount(edges, minlength=10)
        assert [n for _, _, n in bins.rows()] == [int(n) for n in counts if n]
    assert before.rows() != after.rows()

    page_file = out / "index.html"
    html = page_file.read_text(encoding="utf-8")
    _static(html)
    assert 'id="calibration"' in html and 'href="#calibration"' in html
    assert "every image&#39;s every label pooled" in html or "every image's every label" in html
    section = html[html.index('id="calibration"') :]
    eces = re.findall(r'<td class="n">([0-9.]+)</td>', section)[:2]
    assert eces == [f"{before.ece():.4f}", f"{after.ece():.4f}"]
    assert (out / "images" / "calibration.png").stat().st_size > 0
    found, _ = browser_check(page_file, tmp_path)
    assert found["broken"] == [] and found["images"] >= 1
