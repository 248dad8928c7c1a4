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
from imgkit.data.classfiles import read_color_table
from imgkit.data.classmasks import class_ious, confusion, default_colors, iou_summary
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
        # Palette masks read by colour: the palette holds the table's colours, in
        # another order than the classes', so reading the indices would go wrong.
        rng = np.random.default_rng(0)
        perm, index_of = [2, 0, 1], np.array([1, 2, 0], np.uint8)  # perm[index_of[v]] == v
        for i in range(6):
            values = index_of[shapes_pair(rng, (32, 40))[1]]
            img = Image.fromarray(values, mode="L").convert("P")
            img.putpalette([v for j in perm for v in CLASS_COLORS[j]] + [0] * (768 - 9))
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
        assert stored.getpalette()[:9] == [v for c in expected_colors for v in c]
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
    values[0, 0] = 3  # one above the last class
    Image.fromarray(values, mode="L").save(masks / "m001.png")
    write_encoded_mask(masks / "m002.png", shapes_pair(np.random.default_rng(5), (32, 32))[1],
                       "rgb")  # fmt: skip
    out = tmp_path / "data2"
    result = run("prep", images, "--masks", masks, "--mask-classes", root / "classes.txt",
                 "-o", out, "--val", "0.34", "--test", "0")  # fmt: skip
    assert result.exit_code == 0, result.output
    reasons = _reasons(out)
    assert "mask value 3 outside the 3 named classes (0..2)" in reasons["m001.jpg"]
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


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small two-shape dataset (RGB masks) and a softmax U-Net trained on it."""
    root = tmp_path_factory.mktemp("mcseg")
    images, masks, src = write_shape_pairs(root / "src", n=20, size=(64, 64), encoding="rgb")
    data = root / "data"
    result = run("prep", images, "--masks", masks, "--mask-colors", src / "colors.txt",
                 "-o", data, "--val", "0.3", "--test", "0")  # fmt: skip
    assert result.exit_code == 0, result.output
    result = run(
        "train", data, "-o", root / "run", "--model", "unet-mobilenetv2", "--weights", "none",
        "--fine-tune-last", "all", "--size", "32", "--epochs", "12", "--batch-size", "4",
        "--lr", "3e-3",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return root, data, root / "run"


def test_training_records_class_ious(trained):
    _, _, bundle = trained
    meta = json.loads((bundle / "imgkit.json").read_text())
    assert meta["classes"] == ["background", "disc", "square"]
    assert meta["output"] == "softmax" and "threshold" not in meta
    assert [tuple(c) for c in meta["mask_colors"]] == CLASS_COLORS
    val = meta["metrics"]["val"]
    assert set(val["per_class_iou"]) == {"background", "disc", "square"}
    # All background would score a mean IoU of about 0.3 (background's IoU ~0.85, 0, 0).
    assert val["mean_iou"] > 0.5, val
    assert "val_iou" in pd.read_csv(bundle / "history.csv").columns


def test_segment_writes_palette_masks_and_eval_scores_classes(trained, tmp_path):
    root, data, bundle = trained
    new = tmp_path / "new"
    new.mkdir()
    Image.fromarray(shapes_pair(np.random.default_rng(9), (50, 90))[0]).save(new / "wide.jpg")
    out, overlays = tmp_path / "masks", tmp_path / "over"
    result = run("segment", bundle, new, data, "--split", "val", "-o", out, "--overlay", overlays,
                 "--tta")  # fmt: skip
    assert result.exit_code == 0, result.output
    wide = Image.open(out / "wide.png")
    assert wide.size == (90, 50) and wide.mode == "P"
    assert wide.getpalette()[:9] == [v for c in CLASS_COLORS for v in c]
    assert set(np.unique(np.asarray(wide))) <= {0, 1, 2}
    assert Image.open(overlays / "wide.png").width > 3 * 90
    assert "mean IoU against the dataset's masks" in result.output
    result = run("segment", bundle, new, "-o", tmp_path / "t", "--threshold", "0.3")
    assert result.exit_code != 0 and "drop --threshold" in result.output

    evald = tmp_path / "eval"
    result = run("eval", out, "--truth", data, "-o", evald, "--fail-under", "mean_iou=0.4")
    assert result.exit_code == 0, result.output
    metrics = json.loads((evald / "metrics.json").read_text())
    assert metrics["unmatched"] == 1 and set(metrics["per_class_iou"]) == {
        "background", "disc", "square"}  # fmt: skip
    per_image = pd.read_csv(evald / "per_image.csv")
    assert {"mean_iou", "iou_disc", "iou_square"} <= set(per_image.columns)
    result = run("eval", out, "--truth", data, "--fail-under", "iou=0.4")
    assert result.exit_code != 0 and "mean_iou" in result.output

    report = tmp_path / "report"
    result = run("report", bundle, "-o", report, "--truth", data, "--split", "val")
    assert result.exit_code == 0, result.output
    html = (report / "index.html").read_text(encoding="utf-8")
    assert 'id="worst"' in html and "mean IoU" in html


def test_eval_per_class_iou_of_known_masks(tmp_path):
    """Hand-made predictions against a dataset: the table's IoUs are the counted ones."""
    images, masks, root = write_shape_pairs(tmp_path / "src", n=4, size=(32, 32))
    data = tmp_path / "data"
    result = run("prep", images, "--masks", masks, "--mask-classes", root / "classes.txt",
                 "-o", data, "--val", "0", "--test", "0")  # fmt: skip
    assert result.exit_code == 0, result.output
    preds = tmp_path / "preds"
    preds.mkdir()
    rng = np.random.default_rng(0)
    matrix = np.zeros((3, 3), dtype=np.int64)
    for i in range(4):
        truth = shapes_pair(rng, (32, 32))[1]
        pred = truth.copy()
        pred[truth == 2] = 1 if i % 2 else 2  # every other square called a disc
        pred[:2] = 0  # the top rows background
        write_encoded_mask(preds / f"m{i:03d}.png", pred, "palette")
        matrix += confusion(pred, truth, 3)
    evald = tmp_path / "eval"
    result = run("eval", preds, "--truth", data, "-o", evald)
    assert result.exit_code == 0, result.output
    metrics = json.loads((evald / "metrics.json").read_text())
    expected = class_ious(matrix)
    got = [metrics["per_class_iou"][n] for n in ("background", "disc", "square")]
    np.testing.assert_allclose(got, expected)
    assert metrics["mean_iou"] == pytest.approx(expected.mean())
    assert 0.2 < expected[2] < 0.8  # the halved squares: a real test of the counting


@pytest.mark.slow
def test_multiclass_unet_exports_to_onnx_with_parity(trained, tmp_path):
    """The softmax U-Net's ONNX export: per-class maps as Keras's, the same masks."""
    pytest.importorskip("tf2onnx")
    pytest.importorskip("onnxruntime")
    _, data, bundle = trained
    result = run("export", bundle, "-f", "onnx")  # checked on the dataset's val split
    assert result.exit_code == 0, result.output
    parity = json.loads((bundle / "imgkit.json").read_text())["exports"]["onnx"]["parity"]
    assert parity["compared"] == "class probabilities" and parity["max_abs_diff"] <= 1e-4
    n_val = len(Dataset.load(data).rows("val"))
    assert parity["labels_agree"] and parity["images"] == n_val
    masks = {}
    for runtime in ("keras", "onnx"):
        out = tmp_path / runtime
        result = run("segment", bundle, data, "--split", "val", "-o", out, "--runtime", runtime)
        assert result.exit_code == 0, result.output
        masks[runtime] = {p.name: np.asarray(Image.open(p)) for p in sorted(out.glob("*.png"))}
    assert masks["keras"].keys() == masks["onnx"].keys() and len(masks["onnx"]) == n_val
    for name, mask in masks["keras"].items():
        assert (mask != masks["onnx"][name]).mean() < 0.01


def test_parity_compares_most_probable_classes():
    """Export parity of a multi-class segmenter: argmax pixels, accuracy the mean IoU."""
    from types import SimpleNamespace

    from imgkit.export.parity import compare

    bundle = SimpleNamespace(task="segmentation", classes=["bg", "a", "b"])
    truth = np.array([[[0, 1], [2, 2]]])
    keras_out = np.eye(3)[truth] * 0.8 + 0.2 / 3  # right everywhere
    export_out = keras_out.copy()
    export_out[0, 1, 1] = [0.1, 0.6, 0.3]  # one b pixel called a
    got = compare(bundle, keras_out, export_out, truth)
    assert got["compared"] == "class probabilities" and got["pixels_differing"] == 1
    assert got["max_abs_diff"] == pytest.approx(0.8 + 0.2 / 3 - 0.3)
    assert got["accuracy"]["metric"] == "mean IoU" and got["accuracy"]["keras"] == 1.0
    # bg 1/1, a 1/2, b 1/2
    assert got["accuracy"]["export"] == pytest.approx((1 + 0.5 + 0.5) / 3)


def test_cv_scores_multiclass_masks_by_class(tmp_path):
    """cv's OOF and test scores of multi-class maps: argmax pixels, pooled IoU per class."""
    from types import SimpleNamespace

    from imgkit.evaluate.crossval_scores import segmentation_scores

    images, masks, root = write_shape_pairs(tmp_path / "src", n=4, size=(8, 8))
    data = tmp_path / "data"
    result = run("prep", images, "--masks", masks, "--mask-classes", root / "classes.txt",
                 "-o", data, "--val", "0", "--test", "0")  # fmt: skip
    assert result.exit_code == 0, result.output
    ds = Dataset.load(data)
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, (4, 8, 8))
    guess = truth.copy()
    guess[:2, :, :4] = 0  # half of two images called background
    oof = np.eye(3)[guess]
    rows = pd.DataFrame({"path": ds.manifest["path"], "fold": ["1", "1", "2", "2"]})
    preds = SimpleNamespace(rows=rows, oof=oof, truth=truth, test=[oof, oof],
                            test_truth=truth)  # fmt: skip
    scores, frame, _ = segmentation_scores(ds, preds)
    expected = class_ious(confusion(guess, truth, 3))
    got = scores["oof"]["per_class_iou"]
    np.testing.assert_allclose([got[n] for n in ("background", "disc", "square")], expected)
    assert scores["test"]["mean_iou"] == pytest.approx(expected.mean())
    assert list(frame.columns) == ["path", "fold", "mean_iou", "pixel_accuracy"]
    assert frame["mean_iou"].iloc[2] == 1.0 and frame["mean_iou"].iloc[0] < 1.0


@pytest.mark.slow
def test_segment_shards_and_ray_write_the_local_palette_masks(trained, tmp_path):
    """--shard halves and --ray give the very PNGs of one local run (per-class maps)."""
    _, data, bundle = trained
    run("segment", bundle, data, "--split", "val", "-o", tmp_path / "local")
    local = {p.name: p.read_bytes() for p in (tmp_path / "local").iterdir()}
    for k in (1, 2):
        result = run("segment", bundle, data, "--split", "val", "-o", tmp_path / "sharded",
                     "--shard", f"{k}/2")  # fmt: skip
        assert result.exit_code == 0, result.output
    assert {p.name: p.read_bytes() for p in (tmp_path / "sharded").iterdir()} == local
    pytest.importorskip("ray")
    import ray

    try:
        result = run("segment", bundle, data, "--split", "val", "-o", tmp_path / "ray",
                     "--workers", "1", "--ray")  # fmt: skip
        assert result.exit_code == 0, result.output
    finally:
        ray.shutdown()
    assert {p.name: p.read_bytes() for p in (tmp_path / "ray").iterdir()} == local
