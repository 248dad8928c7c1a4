"""Multi-class segmentation: mask classes and colours in prep, the softmax U-Net,
palette masks from segment, per-class IoU in eval, ONNX parity."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from imgkit.commands import cli
from imgkit.data.classmasks import (
    class_ious,
    confusion,
    default_colors,
    iou_summary,
    read_color_table,
)
from imgkit.data.dataset import Dataset
from imgkit.errors import BadInputError

sys.path.insert(0, str(Path(__file__).parent))
from seg_data import CLASS_COLORS, shapes_pair, write_encoded_mask, write_shape_pairs  # noqa: E402


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _reasons(folder: Path) -> dict[str, str]:
    rejects = pd.read_csv(folder / "rejects.csv")
    return dict(zip(rejects["path"].map(lambda p: Path(p).name), rejects["reason"], strict=True))


@pytest.mark.parametrize(
    ("encoding", "table"),
    [("index", "classes"), ("palette", "classes"), ("rgb", "colors"), ("palette", "colors")],
)
def test_prep_reads_each_encoding_as_class_values(tmp_path, encoding, table):
    images, masks, root = write_shape_pairs(tmp_path / "src", n=6, size=(32, 40), encoding=encoding)
    if encoding == "palette" and table == "colors":
        # Palette masks read by colour: their palette must then hold the table's colours.
        rng = np.random.default_rng(0)
        for i in range(6):
            img = Image.fromarray(shapes_pair(rng, (32, 40))[1], mode="L").convert("P")
            img.putpalette([v for c in CLASS_COLORS for v in c] + [0] * (768 - 9))
            img.save(masks / f"m{i:03d}.png")
    flag = "--mask-classes" if table == "classes" else "--mask-colors"
    out = tmp_path / "data"
    result = run("prep", images, "--masks", masks, flag, root / f"{table}.txt", "-o", out,
                 "--val", "0.34", "--test", "0")  # fmt: skip
    assert result.exit_code == 0, result.output
    info = json.loads((out / "dataset.json").read_text())
    assert info["task"] == "segmentation"
    assert info["mask_classes"] == ["background", "disc", "square"]
    expected_colors = CLASS_COLORS if table == "colors" else default_colors(3)
    assert [tuple(c) for c in info["mask_colors"]] == [tuple(c) for c in expected_colors]
    ds = Dataset.load(out)
    assert ds.mask_classes == ["background", "disc", "square"]
    # The stored masks hold the true class values, whatever the encoding.
    rng = np.random.default_rng(0)
    truth = {f"m{i:03d}": shapes_pair(rng, (32, 40))[1] for i in range(6)}
    for path, mask in zip(ds.manifest["path"], ds.manifest["mask"], strict=True):
        stored = Image.open(out / mask)
        assert stored.mode == "P"
        np.testing.assert_array_equal(np.asarray(stored), truth[Path(path).stem])
    cached = ds.mask_arrays("train", (16, 20))
    assert cached.shape[1:] == (16, 20, 1) and set(np.unique(cached)) == {0, 1, 2}


def test_prep_rejects_stray_values_and_colours(tmp_path):
    images, masks, root = write_shape_pairs(tmp_path / "src", n=6, size=(32, 32), encoding="rgb")
    rgb = np.asarray(Image.open(masks / "m000.png")).copy()
    rgb[:3, :3] = (1, 2, 3)
    Image.fromarray(rgb).save(masks / "m000.png")
    out = tmp_path / "data"
    result = run("prep", images, "--masks", masks, "--mask-colors", root / "colors.txt",
                 "-o", out, "--val", "0.4", "--test", "0")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "colour not in --mask-colors: 1,2,3 (9 pixels)" in _reasons(out)["m000.jpg"]
    assert len(Dataset.load(out).manifest) == 5

    # Index masks: a value above the last class; an RGB mask without a colour table.
    images, masks, root = write_shape_pairs(tmp_path / "idx", n=6, size=(32, 32))
    values = np.asarray(Image.open(masks / "m001.png")).copy()
    values[0, 0] = 7
    Image.fromarray(values, mode="L").save(masks / "m001.png")
    write_encoded_mask(masks / "m002.png", shapes_pair(np.random.default_rng(5), (32, 32))[1],
                       "rgb")  # fmt: skip
    out = tmp_path / "data2"
    result = run("prep", images, "--masks", masks, "--mask-classes", root / "classes.txt",
                 "-o", out, "--val", "0.34", "--test", "0")  # fmt: skip
    assert result.exit_code == 0, result.output
    reasons = _reasons(out)
    assert "mask value 7 outside the 3 named classes (0..2)" in reasons["m001.jpg"]
    assert "give the class colours with --mask-colors" in reasons["m002.jpg"]
    assert len(Dataset.load(out).manifest) == 4


def test_class_tables_refuse_bad_files(tmp_path):
    bad = tmp_path / "colors.txt"
    bad.write_text("background 0 0 0\ncar 300 0 0\nroad 1 1 1\n")
    with pytest.raises(BadInputError, match=r"colors.txt:2: expected 'NAME R G B'"):
        read_color_table(bad)
    two = tmp_path / "two.txt"
    two.write_text("background\nobject\n")
    images, masks, _ = write_shape_pairs(tmp_path / "src", n=3, size=(32, 32))
    result = run("prep", images, "--masks", masks, "--mask-classes", two, "-o", tmp_path / "d")
    assert result.exit_code != 0 and "binary masks need no class table" in result.output
    names = tmp_path / "names.txt"
    names.write_text("sky\nsea\nland\n")
    (tmp_path / "named.txt").write_text("sky 0 0 0\nsea 0 0 255\nland 0 255 0\n")
    assert read_color_table(tmp_path / "named.txt")[0] == ["sky", "sea", "land"]


def test_per_class_iou_known_values():
    truth = np.array([[0, 0, 1, 1], [0, 2, 2, 1]])
    pred = np.array([[0, 1, 1, 1], [0, 2, 0, 0]])
    m = confusion(pred, truth, 4)
    # Class 0: true at 3 pixels, predicted at 4, both at 2: IoU 2/5.
    ious = class_ious(m)
    np.testing.assert_allclose(ious[:3], [2 / 5, 2 / 4, 1 / 2])
    assert np.isnan(ious[3])  # neither true nor predicted: not counted in the mean
    s = iou_summary(m, ["bg", "a", "b", "c"])
    assert s["mean_iou"] == pytest.approx((2 / 5 + 2 / 4 + 1 / 2) / 3)
    assert s["pixel_accuracy"] == pytest.approx(5 / 8)
    assert s["per_class_iou"]["c"] is None
