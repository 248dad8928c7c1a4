"""imgkit audit: every finding kind, --fail-on, --dedupe, bad input, the CLI.

Images are smooth random textures made here (each seed a different picture, with
detail at several scales, so copies can be aligned and look-alikes told apart).
Most tests run with ``--features none`` (hashes, statistics, the ECC check); one runs
the embedding path with a randomly initialised MobileNetV2.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import need_module
from PIL import Image, ImageEnhance

from imgkit.commands import cli
from imgkit.data.dataset_write import write_dataset
from imgkit.data.records import Record
from imgkit.evaluate.audit import Thresholds, run_audit
from imgkit.evaluate.audit.labels import suspects

need_module("faiss", "needs the audit extra (faiss-cpu)")
need_module("cv2", "needs the audit extra (opencv-python-headless)")


def texture(seed: int, side: int = 96, tint=(1.0, 0.8, 0.6), detail: int | None = None):
    """A picture: coarse blobs from ``seed``, finer ones from ``detail`` (default: seed)."""
    rng = np.random.default_rng(seed)
    fine = np.random.default_rng(seed if detail is None else detail)
    x = np.zeros((side, side))
    for cells, weight in ((4, 1.0), (12, 0.5), (32, 0.25)):
        r = rng if cells == 4 else fine
        small = Image.fromarray((r.random((cells, cells)) * 255).astype(np.uint8))
        x += weight * np.asarray(small.resize((side, side), Image.BICUBIC), np.float64)
    x = (x - x.min()) / (x.max() - x.min()) * 220 + 20
    rgb = np.stack([x * t for t in tint], axis=-1)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def make_data(root, images: dict[str, tuple[Image.Image, str, str]]):
    """A dataset folder from name -> (image, label, split); files saved by extension."""
    (root / "images").mkdir(parents=True)
    records = []
    for name, (img, label, split) in images.items():
        img.save(root / "images" / name)
        records.append(Record(f"images/{name}", label or None, split=split))
    write_dataset(root, records, [])
    return root


def base_images(n: int = 10) -> dict:
    out = {}
    for k in range(n):
        out[f"a{k}.png"] = (texture(k), "a", "train")
        out[f"b{k}.png"] = (texture(100 + k, tint=(0.5, 0.8, 1.0)), "b", "train")
    return out


@pytest.fixture
def data(tmp_path):
    imgs = base_images()
    a0, a1, b2 = imgs["a0.png"][0], imgs["a1.png"][0], imgs["b2.png"][0]
    imgs["copy-exact.bmp"] = (a0, "a", "train")  # same pixels, another format
    imgs["copy-jpeg.jpg"] = (a1.copy(), "a", "train")
    imgs["copy-resized.png"] = (b2.resize((72, 72), Image.BILINEAR), "b", "val")  # a leak
    return make_data(tmp_path / "data", imgs)


def audit(data, out, **kw):
    kw.setdefault("features", "none")
    return run_audit(data, out, **kw)


def found(df, kind):
    part = df[df["issue"] == kind]
    return {frozenset((p, o)) for p, o in zip(part["path"], part["other"], strict=True)}


def test_duplicates_near_duplicates_and_leaks(data, tmp_path):
    res = audit(data, tmp_path / "out")
    df = pd.read_csv(tmp_path / "out" / "issues.csv", keep_default_na=False)
    assert list(df.columns) == ["path", "issue", "score", "other", "split", "other_split"]
    assert found(df, "duplicate") == {frozenset(("images/a0.png", "images/copy-exact.bmp"))}
    assert frozenset(("images/a1.png", "images/copy-jpeg.jpg")) in found(df, "near_duplicate")
    assert found(df, "leak") == {frozenset(("images/b2.png", "images/copy-resized.png"))}
    leak = df[df["issue"] == "leak"].iloc[0]
    assert {leak["split"], leak["other_split"]} == {"train", "val"}
    # Sorted by issue, then score (worst first).
    assert list(df["issue"]) == sorted(df["issue"])
    for _, part in df.groupby("issue"):
        assert list(part["score"]) == sorted(part["score"], reverse=True)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["issues"]["duplicate"] == 1 and summary["issues"]["leak"] == 1
    assert summary["thresholds"]["max_mismatch"] == Thresholds().max_mismatch
    assert (tmp_path / "out" / "leak.png").is_file() and "leak.png" in summary["sheets"]
    assert sorted(map(sorted, res.clusters)) == sorted(
        map(
            sorted,
            [
                ["images/a0.png", "images/copy-exact.bmp"],
                ["images/a1.png", "images/copy-jpeg.jpg"],
                ["images/b2.png", "images/copy-resized.png"],
            ],
        )
    )


def test_lookalikes_are_not_duplicates(tmp_path):
    """Candidates (as close neighbours would be) are confirmed only when they are copies."""
    from imgkit.evaluate.audit.duplicates import confirm_pairs
    from imgkit.evaluate.audit.scan import scan_images

    files = []
    pictures = [texture(0), texture(0, detail=999), texture(0, detail=5)]
    pictures += [ImageEnhance.Brightness(texture(0)).enhance(1.2), texture(0).resize((80, 80))]
    for k, img in enumerate(pictures):
        img.save(tmp_path / f"{k}.png")
        files.append(tmp_path / f"{k}.png")
    scan = [s for s, _, _ in scan_images(files) if s is not None][0]
    cands = {(0, k): 0.95 for k in range(1, 5)}
    pairs = confirm_pairs(scan, cands, files, Thresholds())
    assert {(p.i, p.j) for p in pairs} == {(0, 3), (0, 4)}  # the brighter and resized copies


def test_outliers_and_imbalance(tmp_path):
    imgs = base_images()
    rng = np.random.default_rng(0)
    imgs["flat.png"] = (Image.new("RGB", (96, 96), (90, 90, 90)), "a", "train")
    imgs["noise.png"] = (Image.fromarray(rng.integers(0, 256, (96, 96, 3), np.uint8)), "b", "train")
    blank = np.full((96, 96, 3), 250, np.uint8)
    blank[5, 7] = 0
    imgs["blank.png"] = (Image.fromarray(blank), "a", "train")
    imgs["c0.png"] = (texture(500), "c", "train")
    res = audit(make_data(tmp_path / "data", imgs), tmp_path / "out")
    out = res.issues[res.issues["issue"] == "outlier"].set_index("path")["other"].to_dict()
    assert out == {
        "images/flat.png": "constant",
        "images/noise.png": "noise",
        "images/blank.png": "near_blank",
    }
    imb = res.issues[res.issues["issue"] == "imbalance"]
    assert list(imb["path"]) == ["c"] and (tmp_path / "out" / "outlier.png").is_file()


def test_confident_learning_ranks_the_wrong_label_first():
    proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.2, 0.8], [0.1, 0.9], [0.55, 0.45]])
    given = np.array([0, 0, 1, 1, 0, 1])  # row 4 is labelled 0 but is surely 1
    idx, likely, score = suspects(proba, given)
    # t = (0.6, 0.65): score = 0.9 / 0.65 - 0.1 / 0.6
    assert idx[0] == 4 and likely[0] == 1 and score[0] == pytest.approx(0.9 / 0.65 - 0.1 / 0.6)
    assert 0 not in idx and 2 not in idx


def test_label_ranking_is_normalised_by_each_class_self_confidence():
    # class 1 is hard (its own images average p1 = 0.45), class 0 easy (t0 = 0.82)
    easy, hard = [[0.95, 0.05]] * 3 + [[0.9, 0.1]], [[0.45, 0.55]] * 3
    confused = [0.85, 0.15]  # a class-1 image the weak model takes for 0: raw margin 0.7
    wrong = [0.35, 0.65]  # labelled 0, yet surer of 1 than class 1's own images: 0.3
    proba = np.array([*easy, wrong, *hard, confused])
    given = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1])
    idx, likely, _ = suspects(proba, given)
    assert list(idx) == [4, 8] and list(likely) == [1, 0]


def _predictions(data, path, wrong: str, classes=("a", "b")):
    m = pd.read_csv(data / "manifest.csv")
    rows = []
    for p, label in zip(m["path"], m["label"], strict=True):
        p_b = 0.9 if label == "b" else 0.1
        if p == wrong:
            p_b = 1 - p_b
        rows.append({"path": p, "label": "", "confidence": 0.9, "p_a": 1 - p_b, "p_b": p_b})
    df = pd.DataFrame(rows)
    df.columns = ["path", "label", "confidence", *[f"p_{c}" for c in classes]]
    df.to_csv(path, index=False)
    return path


def test_label_issues_from_predictions_cli(data, tmp_path):
    preds = _predictions(data, tmp_path / "preds.csv", wrong="images/a3.png")
    result = CliRunner().invoke(
        cli, ["audit", str(data), "-o", str(tmp_path / "out"), "--features", "none",
              "--predictions", str(preds)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"{tmp_path / 'out'}/issues.csv"
    df = pd.read_csv(tmp_path / "out" / "issues.csv", keep_default_na=False)
    labels = df[df["issue"] == "label"]
    assert list(labels["path"]) == ["images/a3.png"] and list(labels["other"]) == ["b"]
    assert (tmp_path / "out" / "label.png").is_file()
    assert "near_duplicate" in result.stderr  # the table


@pytest.mark.parametrize(
    "kinds,code", [("leak", 3), ("duplicate,outlier", 3), ("label,imbalance", 0)]
)
def test_fail_on(data, tmp_path, kinds, code):
    args = ["audit", str(data), "-o", str(tmp_path / "out"), "--features", "none"]
    result = CliRunner().invoke(cli, [*args, "--fail-on", kinds])
    assert result.exit_code == code, result.output
    if code:
        assert "--fail-on" in result.stderr
    assert (tmp_path / "out" / "issues.csv").is_file()  # written before the gate


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


@pytest.mark.parametrize("mode", ["group", "drop"])
def test_dedupe(data, tmp_path, mode):
    before = _digest(data / "images")
    args = ["audit", str(data), "-o", str(tmp_path / "out"), "--features", "none"]
    result = CliRunner().invoke(cli, [*args, f"--dedupe={mode}"])
    assert result.exit_code == 0, result.output
    assert _digest(data / "images") == before  # the user's images are never changed
    m = pd.read_csv(data / "manifest.csv", keep_default_na=False).set_index("path")
    assert m.loc["images/b2.png", "split"] == m.loc["images/copy-resized.png", "split"]
    assert m.loc["images/b2.png", "group"] == m.loc["images/copy-resized.png", "group"] != ""
    info = json.loads((data / "dataset.json").read_text())
    assert info["dedupe"]["clusters"] == 3 and info["dedupe"]["moved"] == 1
    assert ("images/copy-exact.bmp" in m.index) == (mode == "group")
    assert info["images"] == len(m) and sum(
        sum(v.values()) for v in info["counts"].values()
    ) == len(m)
    again = audit(data, tmp_path / "again")
    assert again.summary["issues"]["leak"] == 0


def test_bad_input(data, tmp_path):
    (data / "images" / "a5.png").write_bytes(b"not a png")  # unreadable since prep
    res = audit(data, tmp_path / "out")
    rejects = pd.read_csv(tmp_path / "out" / "rejects.csv")
    assert list(rejects["path"]) == [str(data / "images" / "a5.png")]
    assert res.summary["issues"]["duplicate"] == 1  # and the audit went on
    run = CliRunner()
    base = ["audit", str(data), "-o", str(tmp_path / "o2"), "--features", "none"]
    preds = _predictions(data, tmp_path / "p.csv", "images/a3.png", classes=("a", "x"))
    r = run.invoke(cli, [*base, "--predictions", str(preds)])
    assert r.exit_code == 1 and str(preds) in r.stderr and "classes" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    preds = _predictions(data, tmp_path / "q.csv", "images/a3.png")
    pd.concat([pd.read_csv(preds), pd.read_csv(preds).head(1).assign(path="elsewhere.png")]).to_csv(
        preds, index=False
    )
    r = run.invoke(cli, [*base, "--predictions", str(preds)])
    assert r.exit_code == 1 and str(preds) in r.stderr and "elsewhere.png" in r.stderr
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    r = run.invoke(cli, [*base, "--against", str(tmp_path / "empty")])
    assert r.exit_code == 1 and "empty" in r.stderr and "no image" in r.stderr


def test_against_folder_leak(data, tmp_path):
    other = tmp_path / "kaggle-test"
    other.mkdir()
    texture(7).save(other / "t1.jpg", quality=80)  # a copy of a7
    texture(12345).save(other / "t2.png")
    res = audit(data, tmp_path / "out", against=other)
    leaks = res.issues[res.issues["issue"] == "leak"]
    row = leaks[leaks["other"].str.endswith("t1.jpg")]
    assert list(row["path"]) == ["images/a7.png"] and list(row["other_split"]) == ["against"]
    assert not leaks["other"].str.endswith("t2.png").any()


def test_missing_extra_names_the_install(data, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "cv2", None)
    r = CliRunner().invoke(
        cli, ["audit", str(data), "-o", str(tmp_path / "o"), "--features", "none"]
    )
    assert r.exit_code == 1 and 'pip install -e ".[audit]"' in r.stderr


def test_embeddings_find_crops_and_are_cached(tmp_path):
    """The embedding path (random MobileNetV2 weights: offline) finds a 4%-a-side crop."""
    imgs = base_images(6)
    src = imgs["b1.png"][0]
    imgs["crop.png"] = (src.crop((4, 2, 92, 90)), "b", "test")
    data = make_data(tmp_path / "data", imgs)
    res = run_audit(data, tmp_path / "out", weights="none")
    assert found(res.issues, "leak") == {frozenset(("images/b1.png", "images/crop.png"))}
    cached = sorted((data / ".cache").glob("embed-mobilenetv2-128-random-*.npy"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    run_audit(data, tmp_path / "out2", weights="none")
    assert cached[0].stat().st_mtime_ns == stamp  # read, not recomputed
