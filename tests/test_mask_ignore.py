"""Multi-class masks with ignored pixels (VOC's 255 borders): kept by prep, left out of
the loss, the training metrics and every IoU."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from imgkit.commands import cli
from imgkit.data.classfiles import mask_classes_from
from imgkit.data.classmasks import IGNORE, IGNORE_COLOR, confusion, iou_summary
from imgkit.data.dataset import Dataset
from imgkit.errors import BadInputError

sys.path.insert(0, str(Path(__file__).parent))
from seg_data import CLASS_COLORS, shapes_pair  # noqa: E402

VOC_BORDER = IGNORE_COLOR  # PASCAL VOC draws its void borders in this colour


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _bordered(values: np.ndarray) -> np.ndarray:
    """Class values with a one-pixel 255 border around every object, as VOC draws it."""
    out = values.copy()
    inner = values > 0
    grown = inner.copy()
    grown[1:] |= inner[:-1]
    grown[:-1] |= inner[1:]
    grown[:, 1:] |= inner[:, :-1]
    grown[:, :-1] |= inner[:, 1:]
    out[grown & ~inner] = IGNORE
    return out


def _write_set(root: Path, n: int, size=(24, 24), rgb: bool = False) -> tuple[Path, Path, dict]:
    """Images and VOC-like masks (index PNGs, or RGB with the VOC border colour)."""
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    rng = np.random.default_rng(0)
    truth = {}
    for i in range(n):
        image, values = shapes_pair(rng, size)
        values = _bordered(values)
        truth[f"m{i:03d}"] = values
        Image.fromarray(image).save(images / f"m{i:03d}.png")
        if rgb:
            table = np.zeros((256, 3), np.uint8)
            table[:3], table[IGNORE] = CLASS_COLORS, VOC_BORDER
            Image.fromarray(table[values]).save(masks / f"m{i:03d}.png")
        else:
            Image.fromarray(values, mode="L").save(masks / f"m{i:03d}.png")
    return images, masks, truth


@pytest.mark.parametrize("how", ["line", "option", "colour"])
def test_prep_keeps_ignored_pixels_and_records_them(tmp_path, how):
    images, masks, truth = _write_set(tmp_path / "src", 4, rgb=how == "colour")
    table = tmp_path / "classes.txt"
    if how == "colour":
        table.write_text("background 0 0 0\ndisc 200 30 30\nsquare 30 200 30\nignore 224 224 192\n")
        flags = ["--mask-colors", table]
    else:
        table.write_text("background\ndisc\nsquare\n" + ("255 ignore\n" if how == "line" else ""))
        flags = ["--mask-classes", table] + (["--mask-ignore", "255"] if how == "option" else [])
    out = tmp_path / "data"
    result = run("prep", images, "--masks", masks, *flags, "-o", out, "--val", "0", "--test", "0")
    assert result.exit_code == 0, result.output
    assert not pd.read_csv(out / "rejects.csv").shape[0]
    info = json.loads((out / "dataset.json").read_text())
    assert info["mask_ignore"] == IGNORE
    if how == "colour":
        assert info["mask_ignore_colors"] == [list(VOC_BORDER)]
    else:
        assert info["mask_ignore_values"] == [255]
    ds = Dataset.load(out)
    for path, mask in zip(ds.manifest["path"], ds.manifest["mask"], strict=True):
        stored = Image.open(out / mask)
        np.testing.assert_array_equal(np.asarray(stored), truth[Path(path).stem])
        assert tuple(stored.getpalette()[3 * IGNORE : 3 * IGNORE + 3]) == VOC_BORDER
    # Resized by nearest neighbour: the ignore value is never blended into a class.
    assert set(np.unique(ds.mask_arrays("train", (17, 13)))) == {0, 1, 2, IGNORE}

    # Undeclared, the same masks are rejects, as before.
    plain = tmp_path / "plain.txt"
    plain.write_text("background\ndisc\nsquare\n")
    if how != "colour":
        result = run("prep", images, "--masks", masks, "--mask-classes", plain,
                     "-o", tmp_path / "d2", "--val", "0", "--test", "0")  # fmt: skip
        assert result.exit_code != 0 and "mask value 255 outside the 3 named" in result.output


def test_class_files_refuse_a_bad_ignore(tmp_path):
    classes = tmp_path / "classes.txt"
    classes.write_text("background\ndisc\nsquare\n2 ignore\n")
    with pytest.raises(BadInputError, match=r"ignore value 2 is class 'square'"):
        mask_classes_from(classes, None)
    classes.write_text("background\ndisc\nsquare\n")
    with pytest.raises(BadInputError, match=r"--mask-ignore: ignore value 0 is class"):
        mask_classes_from(classes, None, ignore=0)
    table = mask_classes_from(classes, None, ignore=254)
    assert table.ignore_values == (254,) and table.info()["mask_ignore"] == IGNORE
    many = tmp_path / "many.txt"
    many.write_text("".join(f"c{i} {i} {i} 7\n" for i in range(256)) + "ignore 1 2 3\n")
    with pytest.raises(BadInputError, match="256 classes leave no value for ignored pixels"):
        mask_classes_from(None, many)
    images, masks, _ = _write_set(tmp_path / "src", 3)
    result = run("prep", images, "--masks", masks, "--mask-ignore", "255", "-o", tmp_path / "d")
    assert result.exit_code != 0 and "--mask-ignore is for multi-class masks" in result.output


def test_iou_leaves_ignored_pixels_out():
    truth = np.array([[0, 1, 255], [2, 255, 1]])
    right = np.array([[0, 1, 0], [2, 0, 1]])
    wrong_there = np.array([[0, 1, 2], [2, 1, 1]])  # wrong only where the truth is ignored
    for pred in (right, wrong_there):
        s = iou_summary(confusion(pred, truth, 3), ["bg", "a", "b"])
        assert s["mean_iou"] == 1.0 and s["pixel_accuracy"] == 1.0
    assert confusion(wrong_there, truth, 3).sum() == 4


def _loss_inputs(seed=0):
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 3, (2, 6, 5)).astype(np.float32)
    ignored = rng.random(values.shape) < 0.3
    values[ignored] = IGNORE
    logits = rng.normal(size=(2, 6, 5, 3))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return values[..., None], probs.astype(np.float32), ignored


def _expected_loss(y, p):
    """Cross-entropy (mean over labelled pixels) + mean per-class soft Dice, per image."""
    out = []
    for values, probs in zip(y[..., 0], p, strict=True):
        keep = values < 3
        v, q = values[keep].astype(int), probs[keep]
        ce = -np.log(q[np.arange(len(v)), v]).mean()
        t = np.eye(3)[v]
        dice = (2 * (t * q).sum(0) + 1) / (t.sum(0) + q.sum(0) + 1)
        out.append(ce + 1 - dice.mean())
    return np.array(out)


def test_loss_is_that_of_the_labelled_pixels_alone():
    from imgkit.train.segloss import class_ce_dice_loss

    y, p, ignored = _loss_inputs()
    loss = np.asarray(class_ce_dice_loss(y, p))
    np.testing.assert_allclose(loss, _expected_loss(y, p), rtol=1e-5)
    changed = p.copy()
    changed[ignored] = np.array([0.98, 0.01, 0.01], np.float32)  # only ignored pixels
    np.testing.assert_allclose(np.asarray(class_ce_dice_loss(y, changed)), loss, rtol=1e-6)


def test_loss_without_ignored_pixels_is_unchanged():
    """No ignored pixel: the same numbers as the plain pixel-mean cross-entropy + Dice."""
    import keras
    from keras import ops

    from imgkit.train.segloss import class_ce, class_dice_loss

    y, p, _ = _loss_inputs(1)
    y = np.where(y == IGNORE, 1, y).astype(np.float32)
    plain = ops.mean(keras.losses.sparse_categorical_crossentropy(y, p), axis=(1, 2))
    np.testing.assert_allclose(np.asarray(class_ce(y, p)), np.asarray(plain), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(class_dice_loss(y, p)), 1 - _dice(y, p), rtol=1e-5)
    # The metrics too: the same figures as Keras's own.
    from imgkit.train.segloss import ClassAccuracy, ClassMeanIoU

    ours = [ClassAccuracy(), ClassMeanIoU(3, sparse_y_true=True, sparse_y_pred=False)]
    theirs = [
        keras.metrics.SparseCategoricalAccuracy(),
        keras.metrics.MeanIoU(3, sparse_y_true=True, sparse_y_pred=False),
    ]
    for a, b in zip(ours, theirs, strict=True):
        a.update_state(y, p)
        b.update_state(y, p)
        assert float(a.result()) == pytest.approx(float(b.result()), rel=1e-7)


def _dice(y, p):
    t = np.eye(3)[y[..., 0].astype(int)]
    return ((2 * (t * p).sum((1, 2)) + 1) / (t.sum((1, 2)) + p.sum((1, 2)) + 1)).mean(-1)


def test_training_metrics_leave_ignored_pixels_out():
    from imgkit.train.segloss import ClassAccuracy, ClassMeanIoU

    y, p, ignored = _loss_inputs(2)
    right = np.eye(3, dtype=np.float32)[np.where(ignored, 0, y[..., 0]).astype(int)]
    right[ignored] = np.array([0.1, 0.1, 0.8], np.float32)  # wrong wherever ignored
    accuracy = ClassAccuracy(name="accuracy")
    iou = ClassMeanIoU(num_classes=3, sparse_y_true=True, sparse_y_pred=False, name="iou")
    for metric in (accuracy, iou):
        metric.update_state(y, right)
        assert float(metric.result()) == pytest.approx(1.0)


def test_parity_and_cv_leave_ignored_pixels_out(tmp_path):
    from imgkit.evaluate.crossval_scores import segmentation_scores
    from imgkit.export.parity import compare

    y, p, ignored = _loss_inputs(3)
    truth = y[..., 0].astype(np.uint8)
    right = np.eye(3)[np.where(ignored, 2, truth)]  # class 2 wherever ignored
    bundle = SimpleNamespace(task="segmentation", classes=["bg", "a", "b"])
    got = compare(bundle, right, right, truth)
    assert got["accuracy"]["keras"] == 1.0 and got["accuracy"]["export"] == 1.0

    images, masks, _ = _write_set(tmp_path / "src", 2, size=(6, 5))
    (tmp_path / "classes.txt").write_text("background\ndisc\nsquare\n255 ignore\n")
    data = tmp_path / "data"
    result = run("prep", images, "--masks", masks, "--mask-classes", tmp_path / "classes.txt",
                 "-o", data, "--val", "0", "--test", "0")  # fmt: skip
    assert result.exit_code == 0, result.output
    ds = Dataset.load(data)
    rows = pd.DataFrame({"path": ds.manifest["path"], "fold": ["1", "2"]})
    preds = SimpleNamespace(rows=rows, oof=right, truth=truth, test=[right], test_truth=truth)
    scores, frame, _ = segmentation_scores(ds, preds)
    assert scores["oof"]["mean_iou"] == 1.0 and scores["test"]["pixel_accuracy"] == 1.0
    assert (frame["mean_iou"] == 1.0).all()


def test_eval_scores_only_labelled_pixels(tmp_path):
    images, masks, truth = _write_set(tmp_path / "src", 3)
    classes = tmp_path / "classes.txt"
    classes.write_text("background\ndisc\nsquare\n255 ignore\n")
    data = tmp_path / "data"
    result = run("prep", images, "--masks", masks, "--mask-classes", classes,
                 "-o", data, "--val", "0", "--test", "0")  # fmt: skip
    assert result.exit_code == 0, result.output
    preds = tmp_path / "preds"
    preds.mkdir()
    for stem, values in truth.items():
        pred = np.where(values == IGNORE, 2, values).astype(np.uint8)  # wrong only there
        Image.fromarray(pred, mode="L").save(preds / f"{stem}.png")
    result = run("eval", preds, "--truth", data, "-o", tmp_path / "eval",
                 "--fail-under", "mean_iou=0.999")  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["mean_iou"] == 1.0 and metrics["pixel_accuracy"] == 1.0
    assert metrics["ignored_pixels"] == sum(int((v == IGNORE).sum()) for v in truth.values()) > 0
    assert set(metrics["per_class_iou"].values()) == {1.0}
    # A predicted mask holding the ignore value is not a prediction.
    Image.fromarray(truth["m000"], mode="L").save(preds / "m000.png")
    result = run("eval", preds, "--truth", data, "-o", tmp_path / "eval2")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "eval2" / "metrics.json").read_text())["unreadable"] == 1


@pytest.mark.slow  # a U-Net trains (about 30 s); the loss and metrics tests above are fast
def test_training_and_segment_with_ignored_pixels(tmp_path):
    """A U-Net trains on masks with 255 borders (finite losses, the bundle records the
    ignore value) and segment scores and draws them against the dataset's masks."""
    images, masks, _ = _write_set(tmp_path / "src", 8, size=(32, 32))
    classes = tmp_path / "classes.txt"
    classes.write_text("background\ndisc\nsquare\n255 ignore\n")
    data, bundle = tmp_path / "data", tmp_path / "run"
    result = run("prep", images, "--masks", masks, "--mask-classes", classes,
                 "-o", data, "--val", "0.25", "--test", "0")  # fmt: skip
    assert result.exit_code == 0, result.output
    result = run("train", data, "-o", bundle, "--model", "unet-mobilenetv2", "--weights", "none",
                 "--fine-tune-last", "all", "--size", "32", "--epochs", "2", "--batch-size",
                 "3")  # fmt: skip
    assert result.exit_code == 0, result.output
    meta = json.loads((bundle / "imgkit.json").read_text())
    assert meta["mask_ignore"] == IGNORE and meta["classes"] == ["background", "disc", "square"]
    history = pd.read_csv(bundle / "history.csv")
    assert np.isfinite(history[["loss", "val_loss", "accuracy", "iou"]].to_numpy()).all()
    assert 0.0 <= meta["metrics"]["val"]["pixel_accuracy"] <= 1.0
    out = tmp_path / "masks"
    result = run("segment", bundle, data, "--split", "val", "-o", out, "--overlay",
                 tmp_path / "over")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "mean IoU against the dataset's masks" in result.output
    for path in out.glob("*.png"):
        assert np.asarray(Image.open(path)).max() < 3  # never the ignore value


def test_folds_of_a_dataset_keep_its_classes_and_ignore_value(tmp_path):
    """prep DATA --folds K: the new dataset reads the same masks the same way."""
    images, masks, _ = _write_set(tmp_path / "src", 6, size=(12, 12))
    classes = tmp_path / "classes.txt"
    classes.write_text("background\ndisc\nsquare\n255 ignore\n")
    data, folded = tmp_path / "data", tmp_path / "folded"
    result = run("prep", images, "--masks", masks, "--mask-classes", classes,
                 "-o", data, "--test", "0")  # fmt: skip
    assert result.exit_code == 0, result.output
    result = run("prep", data, "--folds", "2", "-o", folded)
    assert result.exit_code == 0, result.output
    before, after = Dataset.load(data).info, Dataset.load(folded).info
    for key in ("mask_classes", "mask_colors", "mask_ignore", "mask_ignore_values"):
        assert after[key] == before[key], key
    values = Dataset.load(folded).mask_arrays("train", (12, 12))
    assert set(np.unique(values)) == {0, 1, 2, IGNORE}
