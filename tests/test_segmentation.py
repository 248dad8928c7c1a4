"""Segmentation: prep with masks, the U-Net, training, segment (TTA), mask eval, the script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from imgkit.commands import cli
from imgkit.data.dataset import Dataset
from imgkit.data.masks import mask_scores, read_mask
from imgkit.errors import BadImageError, BadInputError
from imgkit.infer.segment import flip_tta
from imgkit.train.resolve import resolve_settings

sys.path.insert(0, str(Path(__file__).parent))
from seg_data import disc_pair, write_disc_pairs  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result


def _mask_array(h=10, w=12):
    m = np.zeros((h, w), dtype=bool)
    m[2:6, 3:9] = True
    return m


# --- mask encodings -----------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["0/1", "0/255", "palette", "rgb", "bool"])
def test_mask_encodings_read_the_same(tmp_path, encoding):
    m = _mask_array()
    path = tmp_path / "m.png"
    if encoding == "0/1":
        Image.fromarray(m.astype(np.uint8)).save(path)
    elif encoding == "0/255":
        Image.fromarray(m.astype(np.uint8) * 255).save(path)
    elif encoding == "palette":
        img = Image.fromarray(m.astype(np.uint8), mode="L").convert("P")
        img.putpalette([0, 0, 0, 30, 200, 60] + [0] * 762)
        img.save(path)
    elif encoding == "rgb":
        rgb = np.zeros((*m.shape, 3), np.uint8)
        rgb[m] = (20, 180, 240)
        Image.fromarray(rgb).save(path)
    else:
        Image.fromarray(m).save(path)  # mode "1"
    info = read_mask(path)
    assert np.array_equal(info.mask, m)
    assert info.plain == (encoding == "0/255")


def test_mask_repair_and_refusals(tmp_path):
    m = _mask_array(40, 40)
    noisy = m.astype(np.uint8) * 250
    noisy[0, 0], noisy[3, 4] = 3, 244  # compression-like noise near the extremes
    Image.fromarray(noisy).save(tmp_path / "noisy.png")
    info = read_mask(tmp_path / "noisy.png")
    assert "repaired" in info.note and np.array_equal(info.mask, m)

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "empty.png")
    with pytest.raises(
        BadImageError, match=r"empty\.png: empty mask \(every pixel is background\)"
    ):
        read_mask(tmp_path / "empty.png")
    labels = np.arange(64, dtype=np.uint8).reshape(8, 8)  # an instance label map
    Image.fromarray(labels).save(tmp_path / "labels.png")
    with pytest.raises(BadImageError, match=r"labels\.png: not a two-valued mask \(64 distinct"):
        read_mask(tmp_path / "labels.png")


def test_mask_scores():
    t = _mask_array()
    assert mask_scores(t, t) == {"iou": 1.0, "dice": 1.0, "pixel_accuracy": 1.0}
    s = mask_scores(np.zeros_like(t), t)
    assert s["iou"] == 0 and s["dice"] == 0


def test_eval_brings_a_smaller_prediction_to_its_truth_by_nearest_neighbour(tmp_path):
    """A mask predicted at half size is scored at the truth's size, and flagged."""
    from imgkit.evaluate.maskeval import evaluate_masks

    truth, preds = tmp_path / "truth", tmp_path / "preds"
    truth.mkdir()
    preds.mkdir()
    true = np.zeros((8, 8), np.uint8)
    true[:, :4] = 255  # the left half
    Image.fromarray(true).save(truth / "m.png")
    pred = np.zeros((4, 4), np.uint8)
    pred[:, :1] = 255  # the left quarter: columns 0-1 of 8 once doubled, no blur
    Image.fromarray(pred).save(preds / "m.png")
    report = evaluate_masks(preds, truth)
    row = report.per_image.iloc[0]
    assert bool(row["resized"]) and report.summary["resized"] == 1
    assert row["iou"] == pytest.approx(0.5) and row["pixel_accuracy"] == pytest.approx(0.75)


# --- prep --------------------------------------------------------------------------


def test_prep_pairs_rejects_and_converts(tmp_path):
    images, masks = write_disc_pairs(tmp_path / "src", n=8, size=(32, 40))
    # An image without a mask, a mask without an image, a mask of another size, an
    # empty mask, and an RGB mask (converted).
    Image.fromarray(disc_pair(np.random.default_rng(1), (32, 40))[0]).save(images / "lonely.png")
    Image.fromarray(np.full((32, 40), 255, np.uint8)).save(masks / "orphan.png")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(masks / "s000.png")
    Image.fromarray(np.zeros((32, 40), np.uint8)).save(masks / "s001.png")
    rgb = np.zeros((32, 40, 3), np.uint8)
    rgb[5:20, 5:20] = (255, 0, 0)
    Image.fromarray(rgb).save(masks / "s002.png")

    out = tmp_path / "data"
    result = run("prep", images, "--masks", masks, "-o", out, "--val", "0.3", "--test", "0")
    assert result.exit_code == 0, result.output
    info = json.loads((out / "dataset.json").read_text())
    assert info["task"] == "segmentation"
    rejects = pd.read_csv(out / "rejects.csv")
    reasons = dict(zip(rejects["path"].map(lambda p: Path(p).name), rejects["reason"], strict=True))
    assert "no mask" in reasons["lonely.png"]
    assert "mask without an image" in reasons["orphan.png"]
    assert "16x16" in reasons["s000.png"]
    assert "empty mask" in reasons["s001.png"]
    ds = Dataset.load(out)
    manifest = ds.manifest.set_index(ds.manifest["path"].map(lambda p: Path(p).name))
    assert len(manifest) == 6 and set(manifest["split"]) == {"train", "val"}
    # The RGB mask was converted into the dataset; a 0/255 one is referenced in place.
    assert manifest.loc["s002.png", "mask"].startswith("images/masks/")
    assert manifest.loc["s003.png", "mask"].endswith("masks/s003.png")
    assert not manifest.loc["s003.png", "mask"].startswith("images/")
    converted = np.asarray(Image.open(out / manifest.loc["s002.png", "mask"]))
    assert set(np.unique(converted)) == {0, 255}
    cached = ds.mask_arrays("train", (16, 16))
    assert cached.shape[1:] == (16, 16, 1) and set(np.unique(cached)) <= {0, 1}


def test_prep_masks_from_csv(tmp_path):
    images, masks = write_disc_pairs(tmp_path / "src", n=4)
    # The CSV, not the names, pairs them: image i's mask is renamed to another image's
    # name, so pairing by name (or in any other order) gives each image a wrong mask.
    other = [2, 0, 3, 1]
    for i, j in enumerate(other):
        (masks / f"s{i:03d}.png").rename(masks / f"m{j:03d}.png")
    for j in range(4):
        (masks / f"m{j:03d}.png").rename(masks / f"s{j:03d}.png")
    table = pd.DataFrame(
        {"path": [f"images/s{i:03d}.png" for i in range(4)],
         "mask": [f"masks/s{j:03d}.png" for j in other]}
    )  # fmt: skip
    table.to_csv(tmp_path / "src" / "pairs.csv", index=False)
    out = tmp_path / "data"
    result = run("prep", images, "--masks", tmp_path / "src" / "pairs.csv", "-o", out)
    assert result.exit_code == 0, result.output
    manifest = Dataset.load(out).manifest
    assert sorted(Path(p).name for p in manifest["path"]) == [f"s{i:03d}.png" for i in range(4)]
    for image, mask in zip(manifest["path"], manifest["mask"], strict=True):
        # Each image's own disc: bright pixels (about 200) on a dark background (about 40).
        disc = np.asarray(Image.open(out / image))[..., 0] > 120
        assert np.array_equal(np.asarray(Image.open(out / mask)) > 127, disc), (image, mask)


# --- the model -------------------------------------------------------------------------


def test_unet_shapes_and_frozen_batchnorm():
    import keras

    from imgkit.models import create_model
    from imgkit.models.backbones import BACKBONE_LAYER, find_layer

    net = create_model("unet-mobilenetv2", 2, (64, 96), 3, weights="none", fine_tune_last=-1)
    assert net.output_shape == (None, 64, 96, 1)
    encoder = find_layer(net, BACKBONE_LAYER)
    bn = [la for la in encoder.layers if isinstance(la, keras.layers.BatchNormalization)]
    assert bn and not any(la.trainable for la in bn)
    assert any(la.trainable and la.weights for la in encoder.layers)
    frozen = create_model("unet-mobilenetv2", 2, (64, 64), 3, weights="none")
    assert not any(la.trainable and la.weights for la in find_layer(frozen, BACKBONE_LAYER).layers)
    with pytest.raises(
        BadInputError, match="needs an input size that is a multiple of 32, got 60x64"
    ):
        create_model("unet-mobilenetv2", 2, (60, 64), 3, weights="none")


# --- TTA flip-back -------------------------------------------------------------------


def test_pair_augmentation_turns_image_and_mask_together():
    from imgkit.train.epochs import epoch_flips, mirror_pairs

    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (16, 6, 6, 3)).astype(np.uint8)
    y = (x[..., :1] > 127).astype(np.float32)  # the mask is a function of the pixels
    codes = epoch_flips(seed=3, epoch=1, n=16, dihedral=True)
    assert set(codes.tolist()) <= set(range(8)) and len(set(codes.tolist())) > 4
    bx, by = x.copy(), y.copy()
    mirror_pairs(bx, by, codes)
    np.testing.assert_array_equal(by, (bx[..., :1] > 127).astype(np.float32))
    # Each code is its own symmetry: the eight views of one image are all different.
    views = []
    for code in range(8):
        vx, vy = x[:1].copy(), y[:1].copy()
        mirror_pairs(vx, vy, np.array([code]))
        views.append(vx.tobytes())
    assert len(set(views)) == 8
    # Mirrors only (light) stay what they were: a bool per pair, left-right.
    flips = epoch_flips(seed=3, epoch=1, n=16)
    assert flips.dtype == bool
    fx, fy = x.copy(), y.copy()
    mirror_pairs(fx, fy, flips)
    np.testing.assert_array_equal(fx[flips], x[flips][:, :, ::-1])


def test_flip_tta_flips_each_view_back():
    # A "model" whose map is a fixed function of the pixels: a left-right gradient
    # of the input. Averaging its map with the mirrored view's map flipped back gives
    # the map itself; a view left unflipped would give a symmetric blur instead.
    def predict(x):
        return (x[..., :1] / 255.0) * np.linspace(0, 1, x.shape[2])[None, None, :, None]

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(3, 8, 10, 3)).astype(np.float32)
    want = predict(x)
    got = flip_tta(predict, x)
    assert np.allclose(got, (want + predict(x[:, :, ::-1])[:, :, ::-1]) / 2)
    # The mirrored view's map, flipped back, differs from the plain one, so an
    # unflipped view would be caught.
    assert not np.allclose(predict(x[:, :, ::-1]), predict(x)[:, :, ::-1])


def test_flip_tta_with_an_identity_like_keras_model():
    import keras

    # Output = the first channel scaled to [0, 1] at every pixel: a pure function of
    # each pixel, so TTA (mirror, predict, mirror back, average) must equal it exactly.
    inputs = keras.Input(shape=(8, 12, 3))
    outputs = keras.layers.Lambda(lambda t: t[..., :1] / 255.0)(inputs)
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(1).integers(0, 256, size=(2, 8, 12, 3)).astype(np.float32)
    got = flip_tta(lambda a: model.predict_on_batch(a), x)
    assert np.allclose(got, x[..., :1] / 255.0, atol=1e-6)


# --- end to end ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """cli/segmentation.sh run once on tiny discs: (work folder, dataset, bundle, truth).

    The script trains the one U-Net of this file (weights none, 64 px); the tests below
    check its gate, its bundle, and segment and eval on its dataset's val split.
    """
    root = tmp_path_factory.mktemp("seg")
    images, masks = write_disc_pairs(root / "src", n=16, size=(64, 64))
    # Held-out pairs (another seed): the gate scores masks the model never trained on.
    new, new_masks = write_disc_pairs(root / "new", n=8, size=(64, 64), seed=1)
    # The script's own gate must pass: IoU 0.75 on the held-out masks. All background
    # scores 0 and all object about 0.2; this recipe reaches 0.83 there (0.96 on its
    # training images). With the script's default LR, 3 epochs learned nothing (IoU 0).
    work = root / "work"
    env = {
        **os.environ,
        "WORK": str(work),
        "IMAGES": str(images),
        "MASKS": str(masks),
        "NEW": str(new),
        "NEW_MASKS": str(new_masks),
        "WEIGHTS": "none",
        "SIZE": "64",
        "EPOCHS": "6",
        "LR": "8e-3",
        "FAIL_UNDER": "0.75",
        "TRAIN_ARGS": "--fine-tune-last all --batch-size 4",
        "IMGKIT": f"{sys.executable} -m imgkit",
    }
    done = subprocess.run(
        ["bash", str(ROOT / "cli" / "segmentation.sh")], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return work, work / "data", work / "run", new_masks


def test_training_learns_discs(trained):
    _, _, bundle, _ = trained
    meta = json.loads((bundle / "imgkit.json").read_text())
    assert meta["task"] == "segmentation" and meta["pixels"]["offset"] == -1.0
    assert meta["train_args"]["loss"] == "bce+dice"
    # Chance (all background) is IoU 0; a blind all-object guess about 0.2 here.
    assert meta["metrics"]["val"]["iou"] > 0.35
    assert "val_iou" in pd.read_csv(bundle / "history.csv").columns


def test_segmentation_loss_defaults_to_bce_plus_dice():
    # The script passes --loss; a segmentation run without one gets bce+dice.
    settings = resolve_settings({"model": "unet-mobilenetv2"}, task="segmentation")
    assert settings.loss == "bce+dice"


def test_segment_own_size_overlay_and_eval(trained, tmp_path):
    _, data, bundle, _ = trained
    new = tmp_path / "new"
    new.mkdir()
    img, _ = disc_pair(np.random.default_rng(9), (50, 90))  # not square, not 64
    Image.fromarray(img).save(new / "wide.jpg")
    (new / "notes.txt").write_text("not an image")
    out, overlays = tmp_path / "masks", tmp_path / "over"
    result = run("segment", bundle, new, data, "--split", "val", "-o", out,
                 "--overlay", overlays, "--tta")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    wide = Image.open(out / "wide.png")
    assert wide.size == (90, 50) and wide.mode == "L"
    assert set(np.unique(np.asarray(wide))) <= {0, 255}
    # Panels: image, mask, overlay (3 wide) for a plain image; + truth for the dataset.
    assert Image.open(overlays / "wide.png").width > 3 * 90
    val_names = [Path(p).stem for p in Dataset.load(data).rows("val")["path"]]
    panel = Image.open(overlays / f"{val_names[0]}.png")
    assert panel.width > 4 * 64
    assert not list(out.glob(".*"))  # no temporary files left behind

    evald = tmp_path / "eval"
    result = run("eval", out, "--truth", data, "-o", evald, "--fail-under", "iou=0.3")
    assert result.exit_code == 0, result.output
    metrics = json.loads((evald / "metrics.json").read_text())
    assert metrics["n"] == len(val_names) and metrics["unmatched"] == 1
    per_image = pd.read_csv(evald / "per_image.csv")
    assert {"iou", "dice", "pixel_accuracy"} <= set(per_image.columns)
    result = run("eval", out, "--truth", data, "--fail-under", "iou=0.999")
    assert result.exit_code == 3


def test_segmentation_script_on_discs(trained):
    work, _, _, new_masks = trained
    metrics = json.loads((work / "eval" / "metrics.json").read_text())
    assert metrics["n"] == 8 and metrics["unmatched"] == 0
    assert metrics["iou"] >= 0.75 and metrics["dice"] >= 0.85
    assert len(list((work / "overlays").glob("*.png"))) == 8
    # The scores are of the held-out masks: recomputed from the written masks.
    per_image = pd.read_csv(work / "eval" / "per_image.csv")
    assert len(per_image) == 8
    for name in (f"s{i:03d}.png" for i in range(8)):
        said = np.asarray(Image.open(work / "masks" / name)) > 127
        truth = np.asarray(Image.open(new_masks / name)) > 127
        iou = (said & truth).sum() / (said | truth).sum()
        row = per_image[per_image.iloc[:, 0].astype(str).str.endswith(name)]
        assert row["iou"].item() == pytest.approx(iou, abs=1e-6)
