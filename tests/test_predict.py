"""imgkit predict: inputs, the CSV format, inversion, streaming, bad files and bundles.

The bundles here hold a model whose answer is the image's mean brightness (Rescaling,
global average pooling, a fixed Dense layer), so every expected output can be worked
out by hand: a dark image is "dim", a bright one "lit", and an inverted image flips.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image
from tiny_bundles import SIZE, save_classifier

from imgkit.commands import cli
from imgkit.data.dataset import Dataset
from imgkit.data.dataset_write import write_dataset
from imgkit.data.records import Record
from imgkit.infer.inputs import iter_input_paths
from imgkit.infer.inversion import border_mean, should_invert
from imgkit.infer.options import InferOptions
from imgkit.infer.predict import (
    apply_temperature,
    csv_columns,
    frame_to_csv,
    prediction_frame,
    to_probabilities,
)
from imgkit.infer.run import predict_inputs

# The bundles' model: logit(lit) - logit(dim) = 20 * (mean brightness in [0, 1]) - 10.
_save_bundle = save_classifier


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundles")
    return {
        "softmax": _save_bundle(root / "softmax"),
        "sigmoid": _save_bundle(root / "sigmoid", output="sigmoid"),
        "segmentation": _save_bundle(root / "seg", task="segmentation"),
    }


@pytest.fixture(scope="module")
def bundle(bundles):
    from imgkit.bundle import load_bundle

    return load_bundle(bundles["softmax"], task="classification")


def _gray(path: Path, value: int, size=(SIZE, SIZE), mode="L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size, value).convert(mode).save(path)
    return path


def _framed(path: Path, background: int, center: int, size: int = 32) -> Path:
    """A square object of one brightness on a background of another."""
    a = np.full((size, size), background, np.uint8)
    a[size // 4 : -size // 4, size // 4 : -size // 4] = center
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)
    return path


@pytest.fixture
def images(tmp_path, monkeypatch):
    """imgs/ with a dark, a bright and a mid image of assorted sizes and modes."""
    monkeypatch.chdir(tmp_path)
    _gray(Path("imgs/a_black.png"), 0)
    _gray(Path("imgs/b_white.jpg"), 255, size=(40, 30), mode="RGB")
    _gray(Path("imgs/sub/c_gray.png"), 200, size=(5, 9))
    return Path("imgs")


def _run(*args, input=None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input)


# --- the CSV format -------------------------------------------------------------------

GOLDEN = """\
path,label,confidence,p_dim,p_lit
imgs/a_black.png,dim,0.999955,0.999955,4.53979e-05
imgs/b_white.jpg,lit,0.999955,4.53979e-05,0.999955
imgs/sub/c_gray.png,lit,0.996619,0.00338074,0.996619
"""


def test_predict_folder_csv_is_pinned(bundles, images):
    result = _run("predict", bundles["softmax"], images, "--invert", "never")
    assert result.exit_code == 0, result.output
    assert result.stdout == GOLDEN


def test_predict_to_file_is_the_same_csv_and_prints_its_path(bundles, images):
    result = _run("predict", bundles["softmax"], images, "-o", "out/preds.csv", "--invert", "never")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "out/preds.csv"
    assert Path("out/preds.csv").read_text() == GOLDEN
    # The readable table goes to stderr.
    assert "a_black.png" in result.stderr and "3 images predicted" in result.stderr


def test_files_and_folders_mix_in_the_order_given(bundles, images):
    result = _run(
        "predict", bundles["softmax"], "imgs/sub/c_gray.png", "imgs/sub", "imgs/a_black.png"
    )
    assert result.exit_code == 0, result.output
    df = pd.read_csv(io.StringIO(result.stdout))
    assert list(df["path"]) == ["imgs/sub/c_gray.png", "imgs/sub/c_gray.png", "imgs/a_black.png"]


def test_paths_from_stdin(bundles, images):
    result = _run(
        "predict",
        bundles["softmax"],
        "-",
        "--invert",
        "never",
        input="imgs/b_white.jpg\n\nimgs/a_black.png\n",
    )
    assert result.exit_code == 0, result.output
    df = pd.read_csv(io.StringIO(result.stdout))
    assert list(df["path"]) == ["imgs/b_white.jpg", "imgs/a_black.png"]
    assert list(df["label"]) == ["lit", "dim"]


def test_large_inputs_show_counts_not_a_table(bundles, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for i in range(60):
        _gray(Path(f"many/{i:03d}.png"), 0 if i < 45 else 255)
    result = _run("predict", bundles["softmax"], "many", "--batch-size", "16", "--invert", "never")
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(io.StringIO(result.stdout))) == 60
    assert "many/000.png" not in result.stderr
    # One table row a class: its name and how many images it got (45 black, 15 white).
    counts = dict(re.findall(r"^\W*(dim|lit)\W+(\d+)\W*$", result.stderr, flags=re.M))
    assert counts == {"dim": "45", "lit": "15"}, result.stderr
    assert "60 images predicted" in result.stderr


# --- bad files and bundles ------------------------------------------------------------


def test_unreadable_files_are_skipped_with_a_message(bundles, images):
    Path("imgs/broken.png").write_bytes(b"not a png at all")
    Path("imgs/notes.txt").write_text("hello")
    Path("imgs/.DS_Store").write_bytes(b"\0")
    result = _run("predict", bundles["softmax"], images, "imgs/missing.png")
    assert result.exit_code == 0, result.output
    df = pd.read_csv(io.StringIO(result.stdout))
    assert len(df) == 3
    for name in ("broken.png", "notes.txt", "missing.png"):
        lines = [line for line in result.stderr.splitlines() if name in line]
        assert len(lines) == 1 and "skipped" in lines[0], result.stderr
    assert "3 skipped, 1 hidden or system file(s) ignored" in result.stderr
    assert ".DS_Store" not in result.stderr


def test_nothing_readable_is_exit_1_and_writes_no_file(bundles, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("bad.png").write_bytes(b"garbage")
    result = _run("predict", bundles["softmax"], "bad.png", "nope.png", "-o", "preds.csv")
    assert result.exit_code == 1
    assert "no image could be predicted (2 inputs could not be read)" in result.output
    assert "Traceback" not in result.output
    assert not Path("preds.csv").exists()


def test_bundle_of_another_task_is_a_clear_error(bundles, images):
    result = _run("predict", bundles["segmentation"], images)
    assert result.exit_code == 1
    assert "segmentation" in result.output and "classification" in result.output


def test_not_a_bundle_is_a_clear_error(images):
    result = _run("predict", "imgs", images)
    assert result.exit_code == 1
    assert "not a model bundle" in result.output


def test_sigmoid_bundle_gives_both_columns(bundles, images):
    result = _run("predict", bundles["sigmoid"], images, "--invert", "never")
    assert result.exit_code == 0, result.output
    got = pd.read_csv(io.StringIO(result.stdout))
    want = pd.read_csv(io.StringIO(GOLDEN))
    pd.testing.assert_frame_equal(got, want, atol=1e-6)


# --- inversion ------------------------------------------------------------------------


def test_invert_decision():
    light_bg = np.full((8, 8, 1), 250, np.uint8)
    light_bg[2:6, 2:6] = 0
    dark_bg = 255 - light_bg
    assert border_mean(light_bg) == 250
    assert should_invert(light_bg, "dark", "auto")
    assert not should_invert(dark_bg, "dark", "auto")
    assert should_invert(dark_bg, "light", "auto")
    assert not should_invert(light_bg, "light", "auto")
    assert not should_invert(light_bg, None, "auto")
    assert should_invert(dark_bg, "dark", "always")
    assert not should_invert(light_bg, "dark", "never")
    # RGB: the border is judged on its overall brightness.
    assert should_invert(np.repeat(light_bg, 3, axis=2), "dark")


@pytest.mark.parametrize(
    ("invert", "expected"),
    [("auto", ["dim", "dim"]), ("never", ["lit", "dim"]), ("always", ["dim", "lit"])],
)
def test_invert_modes_on_a_dark_polarity_bundle(bundles, tmp_path, monkeypatch, invert, expected):
    monkeypatch.chdir(tmp_path)
    # A photo-like dark object on white (auto inverts it: mostly dark then), and a
    # Fashion-MNIST-like light object on black (auto leaves it).
    _framed(Path("p/1_photo.png"), background=255, center=0, size=40)
    _framed(Path("p/2_native.png"), background=0, center=255, size=40)
    result = _run("predict", bundles["softmax"], "p", "--invert", invert)
    assert result.exit_code == 0, result.output
    assert list(pd.read_csv(io.StringIO(result.stdout))["label"]) == expected


# --- library functions ----------------------------------------------------------------


def test_streaming_reads_inputs_lazily(bundle, tmp_path):
    files = [_gray(tmp_path / f"{i:03d}.png", i) for i in range(40)]
    taken = []

    def paths():
        for f in files:
            taken.append(f)
            yield f

    frames = predict_inputs(bundle, paths(), options=InferOptions(batch_size=4))
    first = next(frames)
    assert len(first) == 4
    # Batch 1 and the one decoding behind it; not the whole input.
    assert len(taken) <= 8
    rest = list(frames)
    assert sum(len(f) for f in rest) == 36 and len(taken) == 40


def test_iter_input_paths_reports_missing_and_reads_stdin(tmp_path):
    a = _gray(tmp_path / "a.png", 0)
    stdin = io.StringIO(f"{a}\n\n{tmp_path / 'gone.png'}\n")
    items = list(iter_input_paths(["-"], stdin=stdin))
    assert items[0] == (a, None)
    assert items[1][0] is None and items[1][1].reason == "no such file or folder"


def test_probabilities_and_rows():
    p = to_probabilities(np.array([[0.25], [1.0]]), "sigmoid", 2)
    np.testing.assert_allclose(p, [[0.75, 0.25], [0.0, 1.0]])
    df = prediction_frame(["x.png", "y.png"], p, ["cat", "dog"])
    assert (
        list(df.columns)
        == csv_columns(["cat", "dog"])
        == [
            "path",
            "label",
            "confidence",
            "p_cat",
            "p_dog",
        ]
    )
    assert frame_to_csv(df, header=False) == "x.png,cat,0.75,0.75,0.25\ny.png,dog,1,0,1\n"


def test_wrong_number_of_outputs_is_a_bundle_error():
    from imgkit.errors import BadBundleError

    with pytest.raises(BadBundleError, match="3 outputs"):
        to_probabilities(np.zeros((2, 3)), "softmax", 2)


def test_temperature():
    p = np.array([[0.8, 0.2], [0.5, 0.5]])
    np.testing.assert_array_equal(apply_temperature(p, 1), p)
    # log-probabilities halved: p ~ sqrt(p) -> sqrt(.8) : sqrt(.2) = 2 : 1
    np.testing.assert_allclose(apply_temperature(p, 2), [[2 / 3, 1 / 3], [0.5, 0.5]])
    sharp = apply_temperature(p, 0.5)
    assert sharp[0, 0] > 0.9 and sharp[0].sum() == pytest.approx(1)


def test_outputs_temperature_and_threshold_edges():
    from imgkit.errors import BadBundleError

    for outputs, k in ((np.zeros((2, 2)), 2), (np.zeros((2, 1)), 3)):
        with pytest.raises(BadBundleError, match="one output unit and two classes"):
            to_probabilities(outputs, "sigmoid", k)
    # Softmax outputs pass through, flattened to one row per image.
    out = np.array([[[0.1], [0.9]], [[0.6], [0.4]]])
    np.testing.assert_array_equal(to_probabilities(out, "softmax", 2), [[0.1, 0.9], [0.6, 0.4]])
    p = np.array([[0.7, 0.3], [0.6, 0.4], [0.2, 0.8]])
    np.testing.assert_array_equal(apply_temperature(p, 1.0), p)
    np.testing.assert_array_equal(apply_temperature(p), p)  # no temperature: none applied
    for bad in (0, -2):
        with pytest.raises(BadBundleError, match="temperature must be positive"):
            apply_temperature(p, bad)
    # A threshold: P(classes[1]) equal to it takes classes[1]; the confidence is always
    # the chosen label's probability.
    df = prediction_frame(["a", "b", "c"], p, ["no", "yes"], threshold=0.4)
    assert df["label"].tolist() == ["no", "yes", "yes"]
    assert df["confidence"].tolist() == [0.7, 0.4, 0.8]
    # More than two classes: no threshold, the most probable class.
    three = prediction_frame(["a"], [[0.5, 0.3, 0.2]], ["x", "y", "z"], threshold=0.1)
    assert three["label"].tolist() == ["x"] and three["confidence"].tolist() == [0.5]


def test_temperature_from_the_bundle_is_applied(tmp_path, images):
    run = _save_bundle(tmp_path / "hot", temperature=1e6)
    result = _run("predict", run, "imgs/a_black.png")
    assert result.exit_code == 0, result.output
    df = pd.read_csv(io.StringIO(result.stdout))
    assert df.loc[0, "p_dim"] == pytest.approx(0.5, abs=1e-3)
    # --uncalibrated: the model's own softmax(5, -5) for a black image, no temperature.
    result = _run("predict", run, "imgs/a_black.png", "--uncalibrated")
    assert result.exit_code == 0, result.output
    df = pd.read_csv(io.StringIO(result.stdout))
    assert df.loc[0, "p_dim"] == pytest.approx(1 / (1 + np.exp(-10)), rel=1e-5)


# --- datasets -------------------------------------------------------------------------


def _dataset(root: Path) -> Path:
    src = root / "src"
    records = []
    for i in range(6):
        label = "lit" if i % 2 else "dim"
        f = _gray(src / f"{i}.png", 230 if label == "lit" else 20)
        records.append(Record(str(f.resolve()), label, split="test" if i < 4 else "train"))
    write_dataset(root / "data", records, [])
    return root / "data"


def test_dataset_split_then_eval(bundles, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _dataset(tmp_path)
    result = _run(
        "predict",
        bundles["softmax"],
        "data",
        "--split",
        "test",
        "-o",
        "preds.csv",
        "--invert",
        "never",
    )
    assert result.exit_code == 0, result.output
    df = pd.read_csv("preds.csv")
    assert len(df) == 4
    # Paths are the dataset folder joined with the manifest's (here ../src/N.png).
    assert list(df["path"]) == [str(p) for p in Dataset.load("data").paths("test")]
    assert df["path"][0] == "data/../src/0.png"
    result = _run("eval", "preds.csv", "--truth", "data", "--fail-under", "accuracy=1")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["accuracy"] == 1.0


def test_dataset_cache_is_used_for_the_training_dataset(bundles, tmp_path, monkeypatch):
    from imgkit.bundle import load_bundle

    monkeypatch.chdir(tmp_path)
    ds = Dataset.load(_dataset(tmp_path))
    bundle = load_bundle(bundles["softmax"])
    bundle.meta["dataset"] = {"path": "data", "hash": ds.hash}
    options = InferOptions(split="test", batch_size=3)
    frames = list(predict_inputs(bundle, [ds.root], options=options))
    assert [len(f) for f in frames] == [3, 1]
    assert ds.cache_file("test", (SIZE, SIZE), 1).is_file()
    labels = pd.concat(frames)["label"].tolist()
    assert labels == ["dim", "lit", "dim", "lit"]
    assert pd.concat(frames)["path"].iloc[0] == str(ds.paths("test")[0])


def test_any_image_mode_and_orientation_is_converted(bundles, tmp_path, make_image):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the file is 16x8, the image 8x16
    paths = [
        # Fully transparent: white once composited on white (black if alpha were dropped).
        make_image(tmp_path / "rgba.png", size=(30, 20), mode="RGBA", color=(0, 0, 0, 0)),
        make_image(tmp_path / "palette.gif", mode="P"),
        make_image(tmp_path / "cmyk.jpg", mode="CMYK"),
        make_image(tmp_path / "deep.png", mode="I;16"),
        make_image(tmp_path / "turned.jpg", size=(16, 8), exif=exif.tobytes()),
    ]
    result = _run("predict", bundles["softmax"], *paths, "--invert", "never")
    assert result.exit_code == 0, result.output
    df = pd.read_csv(io.StringIO(result.stdout))
    assert list(df["path"]) == [str(p) for p in paths]
    assert list(df["label"]) == ["lit", "dim", "dim", "dim", "dim"]

    # The gradients' mean brightness by hand: (row * 7 + col * 13) over 8x6 (w x h) is
    # 63/255, over 16x8 is 122/255; 16-bit and CMYK pixels must land on the same scale.
    # The model's P(lit) is sigmoid(20 * mean - 10).
    mean = np.array([1.0, 63 / 255, 63 / 255, 63 / 255, 122 / 255])
    np.testing.assert_allclose(df["p_lit"], 1 / (1 + np.exp(10 - 20 * mean)), atol=2e-3)


def test_closed_pipe_ends_quietly(bundles, tmp_path):
    """``imgkit predict ... | head``: the reader stops early; that is not an error.

    The rows must outgrow the pipe's buffer: were they to fit, the command would write
    them all and end before it ever met the closed pipe.
    """
    import fcntl
    import subprocess
    import sys

    image = _gray(tmp_path / ("long" * 50) / "x.png", 90)  # long paths make long rows
    paths = [str(image)] * 1000
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgkit", "predict", str(bundles["softmax"]), *paths,
         "--batch-size", "50"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    capacity = fcntl.fcntl(proc.stdout.fileno(), 1032)  # F_GETPIPE_SZ
    assert len(paths) * len(str(image)) > 2 * capacity
    assert proc.stdout.readline().startswith("path,label")
    proc.stdout.close()  # like head, stop reading while rows are still coming
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "Broken pipe" not in err and "Exception" not in err, err
    # It stopped at the closed pipe rather than predicting everything.
    assert "images predicted" not in err, err


def test_unlabeled_dataset_is_predicted_without_naming_the_split(bundles, tmp_path):
    """A Kaggle test archive prepped alone has only an unlabeled split: the default."""
    src = tmp_path / "src"
    records = [
        Record(str(_gray(src / f"{i}.png", 20 + 40 * i).resolve()), None, split="unlabeled")
        for i in range(3)
    ]
    write_dataset(tmp_path / "test-data", records, [])
    for command in ("predict", "tta"):
        result = _run(command, bundles["softmax"], tmp_path / "test-data")
        assert result.exit_code == 0, result.output
        assert len(pd.read_csv(io.StringIO(result.stdout))) == 3
    result = _run("predict", bundles["softmax"], tmp_path / "test-data", "--split", "test")
    assert result.exit_code == 1 and "split 'test' is empty" in result.output
