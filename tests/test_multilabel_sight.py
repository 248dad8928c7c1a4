"""imgkit explain and imgkit report on a multi-label bundle: a heatmap per label, and the
page's per-label table, top losses and confused labels.

The known-answer case: grey noise with a bright square in the top-left corner for label
``tl`` and one in the bottom-right corner for label ``b&r`` (either, both or neither), a
tiny CNN trained on it in a few seconds. A label's heatmap must peak in its own corner.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.cli_helpers import invoke, one_line_error
from tests.test_report import HOSTILE, _static, browser_check
from tests.tiny_bundles import _save, bundle_meta

SIDE, OBJECT = 24, 6
CLASSES = ["b&r", "tl"]  # sorted, as prep sorts them; "&" must be escaped on the page
CORNER = {"tl": (1, 1), "b&r": (SIDE - OBJECT - 5, SIDE - OBJECT - 5)}  # jitter 0-4 added


def scenes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images, (n, 2) labels in CLASSES order, (n, 2, 2) square boxes as top,left)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(70, 180, size=(n, SIDE, SIDE, 1))
    y = rng.random((n, 2)) < 0.5
    boxes = np.zeros((n, 2, 2), dtype=int)
    for i in range(n):
        for j, label in enumerate(CLASSES):
            top, left = np.array(CORNER[label]) + rng.integers(0, 5, size=2)
            boxes[i, j] = top, left
            if y[i, j]:
                x[i, top : top + OBJECT, left : left + OBJECT] = 245
    return x.astype(np.uint8), y, boxes


def _model():
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIDE, SIDE, 1))
    x = layers.Rescaling(1 / 255)(inputs)
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="last_conv")(x)
    x = layers.MaxPooling2D()(x)
    # Flatten, not pooling: where the square is decides which label it is.
    x = layers.Flatten()(x)
    return keras.Model(inputs, layers.Dense(2, activation="sigmoid", name="probs")(x))


@pytest.fixture(scope="module")
def corner_run(tmp_path_factory):
    """A multi-label bundle of the CNN trained on :func:`scenes` (a few seconds)."""
    import keras

    x, y, _ = scenes(600, seed=1)
    model = _model()
    model.compile(keras.optimizers.Adam(1e-2), loss="binary_crossentropy")
    model.fit(x.astype("float32"), y.astype("float32"), epochs=10, batch_size=32, verbose=0)
    meta = bundle_meta(
        task="multilabel",
        classes=CLASSES,
        input_size=[SIDE, SIDE],
        model="corners",
        polarity=None,
        temperature=1.2,
        thresholds={"b&r": 0.4, "tl": 0.6},
    )
    meta["output"] = "multilabel"
    return _save(tmp_path_factory.mktemp("mlsight") / "run", model, meta)


def _in_box(point, box, margin: int = 1) -> bool:
    (x, y), (top, left) = point, box
    return left - margin <= x < left + OBJECT + margin and top - margin <= y < top + OBJECT + margin


def _rows(result) -> list[dict]:
    assert result.exit_code == 0, result.output
    return list(csv.DictReader(io.StringIO(result.stdout)))


def test_each_decided_label_gets_its_own_map_in_its_own_corner(corner_run, tmp_path):
    x, y, boxes = scenes(40, seed=7)
    both = [i for i in range(40) if y[i].all()][:3]
    one = [i for i in range(40) if y[i].sum() == 1][:3]
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in both + one:
        Image.fromarray(x[i, ..., 0]).save(photos / f"cat.{i}.png")
    out = tmp_path / "why"
    rows = _rows(invoke("explain", corner_run, photos, "-o", out, "--save-maps"))
    by_image: dict[str, list[dict]] = {}
    for r in rows:
        by_image.setdefault(Path(r["path"]).name, []).append(r)
    assert len(by_image) == 6
    for i in both + one:
        name = f"cat.{i}.png"
        want = [c for c, on in zip(CLASSES, y[i], strict=True) if on]
        got = by_image[name]
        # The model learned the corners: the decided labels are the true ones, each
        # explained once, with its own probability; the label column is the whole set.
        assert [r["explained"] for r in got] == want
        for r in got:
            assert r["label"] == " ".join(want)
            assert float(r["p_explained"]) >= {"b&r": 0.4, "tl": 0.6}[r["explained"]]
            assert 0 < float(r["confidence"]) <= 1
            box = boxes[i, CLASSES.index(r["explained"])]
            assert _in_box((int(r["peak_x"]), int(r["peak_y"])), box), (name, r)
            stem = f"cat.{i}.{r['explained'].replace('&', '_')}.png"
            assert (out / stem).is_file() and (out / "maps" / stem).is_file()
    # Nothing else written: one overlay per (image, label), none named after the image.
    assert len(list(out.glob("*.png"))) == len(rows) == 3 * 2 + 3


def test_class_option_explains_a_label_whatever_its_probability(corner_run, tmp_path):
    x, y, boxes = scenes(40, seed=9)
    only_tl = next(i for i in range(40) if y[i].tolist() == [False, True])
    Image.fromarray(x[only_tl, ..., 0]).save(tmp_path / "one.png")
    out = tmp_path / "o"
    rows = _rows(invoke("explain", corner_run, tmp_path / "one.png", "-o", out, "--class", "b&r"))
    assert [(r["label"], r["explained"]) for r in rows] == [("tl", "b&r")]
    assert float(rows[0]["p_explained"]) < 0.4  # not decided, explained all the same
    assert (out / "one.b_r.png").is_file()
    both = _rows(
        invoke(
            "explain",
            corner_run,
            tmp_path / "one.png",
            "-o",
            out,
            "--class",
            "tl",
            "--class",
            "b&r",
            "--method",
            "layercam",
        )  # fmt: skip
    )
    assert [r["explained"] for r in both] == ["tl", "b&r"]
    tl = both[0]
    assert _in_box((int(tl["peak_x"]), int(tl["peak_y"])), boxes[only_tl, 1], margin=3)
    one_line_error(
        invoke("explain", corner_run, tmp_path / "one.png", "-o", out, "--class", "haze"),
        "'haze' is not a label", "b&r, tl",
    )  # fmt: skip


def test_no_decided_label_explains_the_most_probable(corner_run, tmp_path):
    x, y, _ = scenes(40, seed=5)
    empty = next(i for i in range(40) if not y[i].any())
    Image.fromarray(x[empty, ..., 0]).save(tmp_path / "plain.png")
    rows = _rows(invoke("explain", corner_run, tmp_path / "plain.png", "-o", tmp_path / "o"))
    assert len(rows) == 1 and rows[0]["label"] == ""
    p = float(rows[0]["p_explained"])
    from imgkit.bundle import load_bundle
    from imgkit.infer.predict import Predictor

    proba = Predictor(load_bundle(corner_run)).proba(x[empty][None])[0]
    assert rows[0]["explained"] == CLASSES[int(proba.argmax())]
    assert p == pytest.approx(proba.max(), rel=1e-5)
    # Nothing decided: the confidence is the chance that neither label is there.
    assert float(rows[0]["confidence"]) == pytest.approx(np.prod(1 - proba), rel=1e-5)


def test_occlusion_measures_each_labels_own_logit(corner_run):
    """The score a multi-label map follows is the sigmoid's pre-activation of that
    label, not a softmax-style logit centred on the other labels."""
    import keras

    from imgkit.bundle import load_bundle
    from imgkit.infer.explain import Explainer

    bundle = load_bundle(corner_run)
    explainer = Explainer(bundle)
    x, y, _ = scenes(30, seed=13)
    # One image with both squares faded towards grey: logits from sure no to sure yes.
    both = x[int(np.flatnonzero(y.all(axis=1))[0])].astype(np.float64)
    x = np.stack([125 + a * (both - 125) for a in np.linspace(0, 1, 40)]).astype(np.uint8)
    head = bundle.model.get_layer("probs")
    features = keras.Model(bundle.model.inputs[0], head.input)(x.astype("float32"))
    kernel, bias = head.get_weights()
    z = np.asarray(features) @ kernel + bias
    raw = explainer.predictor.raw_proba(x)
    for j in range(len(CLASSES)):
        sure = np.abs(z[:, j]) < 8  # float32 sigmoids round off beyond that
        assert sure.sum() >= 5
        got = explainer.logit(raw, j)[sure]
        assert got == pytest.approx(z[sure, j], abs=2e-3)


# --- report --truth -------------------------------------------------------------------

MISLABELLED = 3  # images whose only square is top-left, labelled b&r: sure mistakes


@pytest.fixture(scope="module")
def corner_data(tmp_path_factory):
    """A multi-label dataset of :func:`scenes` (all in train), three of them mislabelled,
    one with a name made of HTML; the mislabelled images' names."""
    root = tmp_path_factory.mktemp("mlsight-data")
    x, y, _ = scenes(30, seed=21)
    (root / "img").mkdir()
    rows, wrong = [], []
    for i in range(30):
        labels = [c for c, on in zip(CLASSES, y[i], strict=True) if on] or ["tl"]
        if not y[i].any():
            continue
        name = f"img.{i}.png"
        if y[i].tolist() == [False, True] and len(wrong) < MISLABELLED:
            name = HOSTILE if not wrong else name
            labels = ["b&r"]
            wrong.append(name)
        Image.fromarray(x[i, ..., 0]).save(root / "img" / name)
        rows.append(f"img/{name},{';'.join(labels)}\n")
    assert len(wrong) == MISLABELLED
    (root / "labels.csv").write_text("path,labels\n" + "".join(rows), encoding="utf-8")
    data = root / "data"
    result = invoke("prep", root / "labels.csv", "-o", data, "--label-sep", ";",
                    "--val", "0", "--test", "0")  # fmt: skip
    assert result.exit_code == 0, result.output
    return data, wrong


def _label_table(html: str) -> str:
    found = re.search(r'<h2 id="labels">.*?</table>', html, re.DOTALL)
    assert found, html[-2000:]
    return found.group(0)


def test_report_shows_labels_top_losses_and_confused_labels(corner_run, corner_data, tmp_path):
    data, wrong = corner_data
    out = tmp_path / "report"
    result = invoke("report", corner_run, "-o", out, "--truth", data, "--split", "train")
    assert result.exit_code == 0, result.output
    page = out / "index.html"
    html = page.read_text(encoding="utf-8")
    _static(html)
    for section in ("labels", "losses", "pairs"):
        assert f'id="{section}"' in html and f'href="#{section}"' in html
    # Every user-given name is escaped text: the label b&r and the HTML file name.
    assert "<td>b&amp;r</td>" in _label_table(html) and "<td>tl</td>" in _label_table(html)
    assert "&lt;img src=x onerror=alert(1)&gt;.png" in html and "<img src=x" not in html
    # The mislabelled images are the worst: each missed b&r and had tl extra; its
    # heatmap is of one of the two wrong labels (the one with the larger loss).
    losses = html[html.index('id="losses"') : html.index('id="pairs"')]
    tiles = re.findall(
        r'<div class="tile( wide)?">(.*?)<div class="name">(.*?)</div>', losses, re.S
    )
    images = len(pd.read_csv(data / "manifest.csv"))
    assert len(tiles) == min(images, 24)  # the 24 worst, or all
    assert [bool(wide) for wide, _, _ in tiles] == [k < 12 for k in range(len(tiles))]
    tiles = [(tile, name) for _, tile, name in tiles]
    escaped = [n.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") for n in wrong]
    for tile, name in tiles[:MISLABELLED]:
        assert any(name.endswith("/" + n) for n in escaped), name
        assert 'missed <span class="bad">b&amp;r</span>' in tile
        assert 'extra <span class="bad">tl</span>' in tile
        assert re.search(r"the heatmap is of (tl|b&amp;r)</div>", tile)
    for tile, _ in tiles[MISLABELLED:]:
        assert "missed" not in tile and "extra" not in tile
    # The pair table: b&r true and missed, tl predicted instead, in at least those images.
    pairs = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td><td class=\"n\">(\d+)</td></tr>", html)
    assert pairs[0][:2] == ("b&amp;r", "tl") and int(pairs[0][2]) >= MISLABELLED
    images = re.findall(r'<img src="([^"]+)"', html)
    assert images and all((out / src).is_file() for src in images)
    found, _ = browser_check(page, tmp_path)
    assert found == {"images": len(images), "broken": []}


def test_report_streams_predictions_and_keeps_only_the_worst(
    corner_run, corner_data, tmp_path, monkeypatch
):
    """From predict's CSV read a few rows at a time, the page is the same as from the
    bundle predicting; with room for three, the three worst stay."""
    import imgkit.evaluate.report_multilabel as page

    data, wrong = corner_data
    preds = tmp_path / "preds.csv"
    result = invoke("predict", corner_run, data, "--split", "train", "-o", preds)
    assert result.exit_code == 0, result.output
    whole = invoke("report", corner_run, "-o", tmp_path / "a", "--truth", data, "--split", "train")
    assert whole.exit_code == 0, whole.output
    monkeypatch.setattr(page, "CHUNK", 4)
    monkeypatch.setattr(page, "TOP_LOSSES", MISLABELLED)
    args = ("-o", tmp_path / "b", "--truth", data, "--predictions", preds)
    result = invoke("report", corner_run, *args)
    assert result.exit_code == 0, result.output
    a = (tmp_path / "a" / "index.html").read_text(encoding="utf-8")
    b = (tmp_path / "b" / "index.html").read_text(encoding="utf-8")
    assert _label_table(a) == _label_table(b)
    losses = b[b.index('id="losses"') : b.index('id="pairs"')]
    names = re.findall(r'<div class="name">(.*?)</div>', losses)
    escaped = [n.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") for n in wrong]
    assert sorted(n.rsplit("/", 1)[-1] for n in names) == sorted(escaped)
    # The same scores as imgkit eval gives the CSV.
    from imgkit.evaluate.matching import read_predictions
    from imgkit.evaluate.multilabel_eval import evaluate_multilabel, load_multilabel_truth

    summary, _, _ = evaluate_multilabel(read_predictions(preds), load_multilabel_truth(data))
    assert f'<td class="n">{summary["micro_f1"]:.4f}</td>' in b
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label,confidence,p_b&r,p_tl\n", encoding="utf-8")
    one_line_error(invoke("report", corner_run, "-o", tmp_path / "c", "--truth", data,
                          "--predictions", bad), "labels column")  # fmt: skip


def test_the_worst_wrong_label_is_the_wrong_one_with_the_largest_loss():
    from imgkit.evaluate.report_multilabel import _worst_label, label_losses

    y = np.array([True, True, False, False])
    proba = np.array([0.3, 0.05, 0.6, 0.1])
    loss = label_losses(y, proba)
    assert loss == pytest.approx(-np.log([0.3, 0.05, 0.4, 0.9]))
    # Label 1 is right (its threshold is low) but has the largest loss; of the wrong
    # ones (0 missed, 2 extra), the missed 0 is the worse.
    assert _worst_label(y, np.array([False, True, True, False]), loss) == 0
    assert _worst_label(y, np.array([True, True, True, False]), loss) == 2
    assert _worst_label(y, y, loss) == 1  # nothing wrong: the least sure label
