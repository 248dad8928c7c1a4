"""``imgkit eval`` against a plain folder of multi-class masks (--mask-classes,
--mask-colors), and the refusal of multi-class masks read as binary."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from imgkit.commands import cli
from imgkit.data.classmasks import IGNORE, IGNORE_COLOR, default_colors, write_class_png

sys.path.insert(0, str(Path(__file__).parent))
from seg_data import write_shape_pairs  # noqa: E402

I = IGNORE  # noqa: E741 -- a VOC border pixel, short enough to draw the masks below
# Two 4x4 true masks (classes 0 background, 1 cat, 2 dog; 255 a border) and the
# predictions, wrong in a few labelled pixels and anywhere on the border.
TRUTH = {
    "a": [[0, 0, 0, 0], [I, I, I, I], [1, 1, 1, 1], [1, 1, 1, 1]],
    "b": [[2, 2, 0, 0], [2, 2, 0, 0], [0, 0, 0, 0], [0, 0, 0, I]],
}
PRED = {
    "a": [[0, 0, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 2, 2]],
    "b": [[2, 2, 0, 0], [2, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 2]],
}
# Counted by hand over the 27 labelled pixels: background 15 true, 16 predicted, 15
# both; cat 8, 6, 6; dog 4, 5, 3.
EXPECTED_IOU = {"background": 15 / 16, "cat": 6 / 8, "dog": 3 / 6}
NAMES = ("background", "cat", "dog")
VOC_COLORS = [(0, 0, 0), (128, 0, 0), (0, 128, 0)]
OTHER_COLORS = [(9, 9, 9), (0, 128, 0), (128, 0, 0)]  # a bundle's palette, not the truth's


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _write_folders(tmp_path: Path, encoding: str) -> tuple[Path, Path]:
    """TRUTH and PRED as files: ``palette`` (truth VOC-style palette PNGs, predictions
    segment's palette PNGs) or ``rgb`` (both colour PNGs; one prediction a palette PNG)."""
    truth, preds = tmp_path / "truth", tmp_path / "preds"
    truth.mkdir(parents=True)
    preds.mkdir()
    palette = VOC_COLORS + [(0, 0, 0)] * (IGNORE - 3) + [IGNORE_COLOR]
    colour = np.zeros((256, 3), np.uint8)
    colour[: len(palette)] = palette
    for stem in TRUTH:
        t, p = np.array(TRUTH[stem], np.uint8), np.array(PRED[stem], np.uint8)
        if encoding == "palette":
            write_class_png(truth / f"{stem}.png", t, palette)
            write_class_png(preds / f"{stem}.png", p, default_colors(3))
        else:
            Image.fromarray(colour[t]).save(truth / f"{stem}.png")
            if stem == "a":  # segment's palette PNG: read by index, whatever its colours
                write_class_png(preds / f"{stem}.png", p, OTHER_COLORS)
            else:
                Image.fromarray(colour[p]).save(preds / f"{stem}.png")
    return truth, preds


def _check_scores(metrics: dict) -> None:
    got = [metrics["per_class_iou"][n] for n in NAMES]
    np.testing.assert_allclose(got, [EXPECTED_IOU[n] for n in NAMES])
    assert metrics["mean_iou"] == pytest.approx(np.mean(list(EXPECTED_IOU.values())))
    assert metrics["pixel_accuracy"] == pytest.approx(24 / 27)
    assert metrics["ignored_pixels"] == 5 and metrics["n"] == 2


def test_palette_folder_with_ignore_border_scored_by_class(tmp_path):
    truth, preds = _write_folders(tmp_path, "palette")
    classes = tmp_path / "voc.txt"
    classes.write_text("background\ncat\ndog\n255 ignore\n")
    out = tmp_path / "eval"
    result = run("eval", preds, "--truth", truth, "--mask-classes", classes, "-o", out,
                 "--fail-under", "mean_iou=0.7")  # fmt: skip
    assert result.exit_code == 0, result.output
    _check_scores(json.loads((out / "metrics.json").read_text()))
    assert "cat" in result.output and "0.7500" in result.output  # the per-class table

    result = run("eval", preds, "--truth", truth, "--mask-classes", classes,
                 "--fail-under", "mean_iou=0.8")  # fmt: skip
    assert result.exit_code == 3 and "mean_iou" in result.output
    # Without the ignore line the borders are values outside the classes: not scored.
    classes.write_text("background\ncat\ndog\n")
    result = run("eval", preds, "--truth", truth, "--mask-classes", classes)
    assert result.exit_code != 0
    assert "mask value 255 outside the 3 named classes" in result.output


def test_rgb_folder_through_mask_colors(tmp_path):
    truth, preds = _write_folders(tmp_path, "rgb")
    colors = tmp_path / "colors.txt"
    colors.write_text("background 0 0 0\ncat 128 0 0\ndog 0 128 0\nignore 224 224 192\n")
    result = run("eval", preds, "--truth", truth, "--mask-colors", colors)
    assert result.exit_code == 0, result.output
    _check_scores(json.loads(result.stdout))
    # --mask-classes alone cannot read colour masks: every pair unreadable, said once.
    classes = tmp_path / "classes.txt"
    classes.write_text("background\ncat\ndog\n")
    result = run("eval", preds, "--truth", truth, "--mask-classes", classes)
    assert result.exit_code == 1 and "give the class colours with --mask-colors" in result.output


def test_multi_class_masks_without_a_class_file_are_refused(tmp_path):
    truth, preds = _write_folders(tmp_path, "palette")
    result = run("eval", preds, "--truth", truth)
    assert result.exit_code == 1
    assert f"{preds / 'a.png'}: mask values 0, 1, 2: not a binary mask" in result.output
    assert "--mask-classes FILE" in result.output
    # A binary prediction against a VOC-style truth (0, 1 and the 255 border).
    Image.fromarray((np.array(TRUTH["a"]) == 1).astype(np.uint8) * 255).save(preds / "a.png")
    (preds / "b.png").unlink()
    result = run("eval", preds, "--truth", truth)
    assert result.exit_code == 1
    assert f"{truth / 'a.png'}: mask values 0, 1, 255: not a binary mask" in result.output
    # Colour masks of three colours (b's prediction has two: binary).
    rgb_truth, rgb_preds = _write_folders(tmp_path / "rgb", "rgb")
    (rgb_preds / "a.png").unlink()
    result = run("eval", rgb_preds, "--truth", rgb_truth)
    assert result.exit_code == 1
    assert f"{rgb_truth / 'b.png'}: 3 colours (0,0,0, 0,128,0, 224,224,192)" in result.output
    assert "--mask-colors FILE" in result.output


def test_binary_folders_still_score_as_binary(tmp_path):
    """0/1, 0/255, two-index palette and noisy JPEG masks: binary, as before."""
    truth, preds = tmp_path / "truth", tmp_path / "preds"
    truth.mkdir()
    preds.mkdir()
    obj = np.zeros((16, 16), bool)
    obj[4:12, 4:12] = True
    half = obj.copy()
    half[4:8] = False  # half the square
    Image.fromarray(obj.astype(np.uint8)).save(truth / "a.png")  # 0/1
    Image.fromarray(obj.astype(np.uint8)).convert("P").save(truth / "b.png")
    Image.fromarray(obj.astype(np.uint8) * 255).save(truth / "c.jpg", quality=70)
    for stem in "abc":
        Image.fromarray(half.astype(np.uint8) * 255).save(preds / f"{stem}.png")
    result = run("eval", preds, "--truth", truth)
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["n"] == 3 and metrics["iou"] == pytest.approx(0.5)
    assert "per_class_iou" not in metrics


def test_an_anti_aliased_binary_png_is_repaired_not_refused(tmp_path):
    """A lossless mask downscaled from a sharper one: grey levels on the disc's edge
    only, each a few pixels; scored as binary (repaired as prep repairs it)."""
    truth, preds = tmp_path / "truth", tmp_path / "preds"
    truth.mkdir()
    preds.mkdir()
    yy, xx = np.mgrid[:1024, :1024]
    disc = ((yy - 512) ** 2 + (xx - 512) ** 2 < 300**2).astype(np.uint8) * 255
    smooth = Image.fromarray(disc).resize((256, 256), Image.Resampling.BOX)
    assert len(np.unique(np.asarray(smooth))) > 10
    smooth.save(truth / "d.png")
    Image.fromarray((np.asarray(smooth) > 127).astype(np.uint8) * 255).save(preds / "d.png")
    result = run("eval", preds, "--truth", truth)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["iou"] == pytest.approx(1.0)


def test_a_dataset_and_a_class_file_must_agree(tmp_path):
    images, masks, root = write_shape_pairs(tmp_path / "src", n=2, size=(16, 16))
    data = tmp_path / "data"
    result = run("prep", images, "--masks", masks, "--mask-classes", root / "classes.txt",
                 "-o", data, "--val", "0", "--test", "0")  # fmt: skip
    assert result.exit_code == 0, result.output
    preds = masks  # the truth itself, as index PNGs
    same = run("eval", preds, "--truth", data, "--mask-classes", root / "classes.txt")
    assert same.exit_code == 0, same.output
    assert json.loads(same.stdout)["mean_iou"] == 1.0
    other = tmp_path / "other.txt"
    other.write_text("background\ncat\ndog\n")
    result = run("eval", preds, "--truth", data, "--mask-classes", other)
    assert result.exit_code == 1
    assert "records the classes background, disc, square; the class file names background, " \
        "cat, dog" in result.output  # fmt: skip
    result = run("eval", tmp_path / "p.csv", "--truth", data, "--mask-classes", other)
    assert result.exit_code == 2 and "not a predictions CSV" in result.output


def _grey_mask(counts: dict[int, int]) -> np.ndarray:
    """A one-row mask holding each value its number of times."""
    return np.concatenate([np.full(n, v, np.int64) for v, n in counts.items()])


def test_edge_levels_boundary():
    """A middle value is an edge's grey level below both bars, a class at either."""
    from imgkit.evaluate.maskread import _edge_levels

    # 1,000 pixels: the bar is a quarter of the smaller extreme's 200, i.e. 50.
    assert _edge_levels(_grey_mask({0: 700, 128: 49, 255: 200}))
    assert not _edge_levels(_grey_mask({0: 700, 128: 50, 255: 200}))
    # 100,000 pixels: the bar is 0.5% of them, 500 (a quarter of 900 is less).
    assert _edge_levels(_grey_mask({0: 98_700, 40: 400, 255: 900}))
    assert not _edge_levels(_grey_mask({0: 98_600, 40: 500, 255: 900}))
    # Two values and no middle: not an anti-aliased binary mask (0/2 is VOC's class 2).
    assert not _edge_levels(_grey_mask({0: 900, 2: 100}))


def test_binary_check_reads_alpha_and_16_bit_masks_and_shows_values(tmp_path):
    from imgkit.errors import BadInputError
    from imgkit.evaluate.maskread import _shown, check_binary

    obj = np.zeros((8, 8), np.uint8)
    obj[2:6, 2:6] = 255
    alpha = Image.fromarray(np.full_like(obj, 128))  # LA: the alpha is not a value
    Image.merge("LA", (Image.fromarray(obj), alpha)).save(tmp_path / "la.png")
    check_binary(tmp_path / "la.png")
    Image.fromarray(obj.astype(np.uint16) * 257).save(tmp_path / "deep.png")  # 0/65535
    check_binary(tmp_path / "deep.png")
    Image.fromarray((obj > 0).astype(np.uint8) * 2).save(tmp_path / "two.png")
    with pytest.raises(BadInputError, match="mask values 0, 2: not a binary"):
        check_binary(tmp_path / "two.png")
    assert _shown(np.arange(6), False) == "0, 1, 2, 3, 4, 5"
    assert _shown(np.arange(8), False) == "0, 1, 2, 3, 4, 5, ... (8 in all)"
    assert _shown(np.array([(224 << 16) | (224 << 8) | 192]), True) == "224,224,192"
