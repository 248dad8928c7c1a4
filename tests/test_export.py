"""imgkit export (ONNX, SavedModel, TFLite), --runtime onnx, and imgkit info.

The bundles are tiny (a convolution, pooling, a dense layer; a two-layer mask net) and
are written by hand, with a real dataset folder whose val split the parity check runs
on. Tests that need the export extra skip with the reason when it is missing (and fail
under CI=true, which installs it); those that export need Keras's TensorFlow backend
(``tensorflow`` marker: they skip under JAX).
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import need_module
from PIL import Image
from tiny_data import make_dataset

from imgkit.commands import cli

SIZE = 12


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _save_bundle(folder: Path, model, **meta) -> Path:
    folder.mkdir(parents=True)
    model.save(folder / "model.keras")
    info = {
        "task": "classification",
        "model": "tiny",
        "classes": ["bright", "dim"],
        "input_size": list(model.input_shape[1:3]),
        "channels": model.input_shape[3],
        "resize": "stretch",
        "pixels": {"scale": 1 / 255, "offset": 0.0, "inside_model": True},
        "polarity": "dark",
        "output": "softmax",
        "train_args": {"epochs": 3, "lr": 0.001},
        "metrics": {"test_accuracy": 0.75},
        "temperature": 1.5,
        **meta,
    }
    (folder / "imgkit.json").write_text(json.dumps(info), encoding="utf-8")
    return folder


def _classifier():
    """A small CNN behind imgkit's training augmentation, as `train` makes for
    mobilenetv2: its random layers must be left out of every export."""
    import keras

    from imgkit.train.augment import with_augmentation

    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    return with_augmentation(model, "standard")


def _mask_net():
    import keras

    keras.utils.set_random_seed(1)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    return keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(x))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A dataset (val split of 16), a pristine classification bundle, and photos."""
    root = tmp_path_factory.mktemp("export")
    ds = make_dataset(root / "data", n_train=8, n_val=16, n_test=8)
    dataset = {"path": str(ds.root.resolve()), "hash": ds.hash}
    bundle = _save_bundle(root / "pristine", _classifier(), dataset=dataset)
    rng = np.random.default_rng(0)
    (root / "photos").mkdir()
    for i in range(6):
        pixels = rng.integers(0, 256, (20 + i, 18, 3)).astype(np.uint8)
        Image.fromarray(pixels).save(root / "photos" / f"{i}.png")
    return {"root": root, "pristine": bundle, "photos": root / "photos"}


def _copy(world, tmp_path, name="run") -> Path:
    return Path(shutil.copytree(world["pristine"], tmp_path / name))


@pytest.fixture(scope="module")
def exported(world):
    """The pristine bundle with model.onnx exported (once for the module)."""
    need_module("onnxruntime", "needs the export extra (onnxruntime)")
    need_module("tf2onnx", "needs the export extra (tf2onnx)")
    run = Path(shutil.copytree(world["pristine"], world["root"] / "exported"))
    result = _run("export", run, "--format", "onnx")
    assert result.exit_code == 0, result.output
    return run


def _meta(run: Path) -> dict:
    return json.loads((run / "imgkit.json").read_text(encoding="utf-8"))


# --- the formats round-trip ----------------------------------------------------------


@pytest.mark.tensorflow
def test_onnx_export_is_recorded_with_parity_on_the_val_split(exported):
    import onnxruntime

    from imgkit.bundle import file_sha256

    record = _meta(exported)["exports"]["onnx"]
    assert record["file"] == "model.onnx" and record["format"] == "onnx"
    assert record["opset"] >= 13 and record["converter"].startswith("tf2onnx")
    assert record["sha256"] == file_sha256(exported / "model.onnx")
    parity = record["parity"]
    assert parity["images"] == 16 and parity["source"].startswith("val split of")
    assert parity["max_abs_diff"] <= 1e-4 and parity["labels_agree"]
    session = onnxruntime.InferenceSession(str(exported / "model.onnx"))
    (inp,) = session.get_inputs()
    out = session.run(None, {inp.name: np.zeros((3, SIZE, SIZE, 1), np.float32)})[0]
    assert out.shape == (3, 2)


def _val(world) -> tuple[np.ndarray, np.ndarray]:
    """The dataset's val images (float32, as the models take them) and their labels."""
    from imgkit.data.dataset import Dataset

    ds = Dataset.load(world["root"] / "data")
    return np.asarray(ds.arrays("val", (SIZE, SIZE), 1), np.float32), ds.labels("val")


def _keras(run: Path, x: np.ndarray) -> np.ndarray:
    """The bundle's Keras model's answers (inference: augmentation layers pass through)."""
    from imgkit.bundle import load_bundle

    return np.asarray(load_bundle(run).model.predict(x, verbose=0))


def _savedmodel(run: Path, x: np.ndarray) -> np.ndarray:
    """TF Serving's view: the named signature over an image batch."""
    import tensorflow as tf

    serve = tf.saved_model.load(str(run / "saved_model")).signatures["serving_default"]
    (name,) = serve.structured_input_signature[1]
    return next(iter(serve(**{name: tf.constant(x)}).values())).numpy()


def _tflite(run: Path, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(run / "model.tflite"))
    source = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(source, x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(source, x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


@pytest.mark.tensorflow
@pytest.mark.parametrize("fmt", ["savedmodel", "tflite"])
def test_each_format_alone_matches_keras(world, tmp_path, fmt):
    if fmt == "tflite":
        need_module("ai_edge_litert", "needs the export extra (ai-edge-litert)")
    run = _copy(world, tmp_path)
    result = _run("export", run, "-f", fmt)
    assert result.exit_code == 0, result.output
    path = run / {"savedmodel": "saved_model", "tflite": "model.tflite"}[fmt]
    assert result.stdout.split() == [str(path)]
    record = _meta(run)["exports"][fmt]
    assert list(_meta(run)["exports"]) == [fmt]
    assert record["parity"]["images"] == 16
    assert record["parity"]["max_abs_diff"] <= 1e-4 and record["parity"]["labels_agree"]
    # Checked here too, in the format's own runtime against Keras (not against the record).
    x, _ = _val(world)
    want = _keras(run, x)
    got = _savedmodel(run, x) if fmt == "savedmodel" else _tflite(run, x)
    assert got.shape == want.shape == (16, 2)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert record["parity"]["max_abs_diff"] == pytest.approx(np.abs(got - want).max(), abs=1e-6)
    assert not list(run.glob(".*part*")), "temporary files left behind"


def _brightness_bundle(folder: Path, dataset: dict) -> Path:
    """A classifier that works on the squares: P(bright) rises with mean brightness.

    The bright squares' images average 0.23-0.29 of full scale, the dim ones' 0.10-0.14,
    so a threshold at 0.185 tells them apart; int8 has real activations to quantize.
    """
    import keras

    inputs = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    conv = keras.layers.Conv2D(2, 1, activation="relu")
    x = keras.layers.GlobalAveragePooling2D()(conv(x))
    dense = keras.layers.Dense(2, activation="softmax")
    out = dense(x)
    conv.set_weights([np.array([[[[1.0, 0.5]]]]), np.zeros(2)])
    dense.set_weights([np.array([[30.0, -30.0], [20.0, -20.0]]), np.array([-7.4, 7.4])])
    return _save_bundle(folder, keras.Model(inputs, out), dataset=dataset)


@pytest.mark.tensorflow
def test_int8_calibrates_on_train_images_spread_over_the_split(world):
    """The ranges are fitted on train images, never on the val images they are checked
    on, and a limit takes images from the whole split, not its first rows."""
    from imgkit.bundle import load_bundle
    from imgkit.data.dataset import Dataset
    from imgkit.export.parity import calibration_images

    bundle = load_bundle(world["pristine"])
    ds = Dataset.load(world["root"] / "data")
    train = [a.tobytes() for a in ds.arrays("train", (SIZE, SIZE), 1)]
    val = {a.tobytes() for a in ds.arrays("val", (SIZE, SIZE), 1)}
    every = [a.tobytes() for a in calibration_images(bundle, 100)]
    assert sorted(every) == sorted(train) and not val & set(every)
    three = [a.tobytes() for a in calibration_images(bundle, 3)]
    assert len(three) == 3 and three[0] == every[0] and three[-1] == every[-1]


@pytest.mark.tensorflow
def test_int8_tflite_accuracy_drop_is_bounded(world, tmp_path):
    need_module("ai_edge_litert", "needs the export extra (ai-edge-litert)")
    dataset = json.loads((world["pristine"] / "imgkit.json").read_text())["dataset"]
    run = _brightness_bundle(tmp_path / "bright", dataset)
    result = _run("export", run, "-f", "tflite", "--quantize", "int8", "--tolerance", "0")
    assert result.exit_code == 0, result.output
    record = _meta(run)["exports"]["tflite"]
    # calibrated on the 8 train images, checked on the 16 val ones
    assert record["quantize"] == "int8" and record["calibration_images"] == 8
    assert "calibrating int8 on 8 train images" in result.stderr
    assert record["parity"]["tolerance"] is None  # not held to --tolerance
    assert "accuracy against the true labels" in result.stderr
    # The int8 model's own answers on the val split, against Keras's and the truth.
    x, truth = _val(world)
    keras_p, int8_p = _keras(run, x), _tflite(run, x)
    keras_acc = np.mean(keras_p.argmax(axis=1) == truth)
    int8_acc = np.mean(int8_p.argmax(axis=1) == truth)
    assert keras_acc == 1.0  # the hand-made model is right on every val image
    assert int8_acc >= keras_acc - 1 / 16  # int8 costs at most one image in 16
    assert np.abs(int8_p - keras_p).max() < 0.1
    accuracy = record["accuracy"]
    assert accuracy["against"] == "the true labels"
    assert accuracy["keras"] == pytest.approx(keras_acc)
    assert accuracy["export"] == pytest.approx(int8_acc)
    assert accuracy["change"] == pytest.approx(int8_acc - keras_acc)


@pytest.mark.tensorflow
def test_segmentation_bundle_exports_and_segments_through_onnx(world, tmp_path):
    need_module("onnxruntime", "needs the export extra (onnxruntime)")
    need_module("tf2onnx", "needs the export extra (tf2onnx)")
    run = _save_bundle(
        tmp_path / "seg", _mask_net(), task="segmentation", classes=["object"],
        output="sigmoid", threshold=0.5, pixels={"scale": 1 / 127.5, "offset": -1.0},
    )  # fmt: skip
    # Its dataset is not at hand: parity needs images named with --check.
    result = _run("export", run, "-f", "onnx")
    assert result.exit_code == 1 and "--check" in result.output
    result = _run("export", run, "-f", "onnx", "--check", world["photos"])
    assert result.exit_code == 0, result.output
    parity = _meta(run)["exports"]["onnx"]["parity"]
    assert parity["compared"] == "mask probabilities" and parity["max_abs_diff"] <= 1e-4
    assert parity["images"] == 6 and "pixels_differing" in parity
    masks = {}
    for runtime in ("keras", "onnx"):
        out = tmp_path / runtime
        result = _run("segment", run, world["photos"], "-o", out, "--runtime", runtime)
        assert result.exit_code == 0, result.output
        masks[runtime] = {p.name: np.asarray(Image.open(p)) for p in sorted(out.glob("*.png"))}
    assert masks["keras"].keys() == masks["onnx"].keys() and len(masks["onnx"]) == 6
    for name, mask in masks["keras"].items():
        assert (mask != masks["onnx"][name]).mean() < 0.01


# --- predict through ONNX Runtime ----------------------------------------------------


@pytest.mark.tensorflow
def test_predict_and_tta_through_onnx_match_keras(exported, world):
    frames = {}
    for command in ("predict", "tta"):
        for runtime in ("keras", "onnx"):
            extra = ("-n", "3") if command == "tta" else ()
            result = _run(command, exported, world["photos"], "--runtime", runtime, *extra)
            assert result.exit_code == 0, result.output
            frames[command, runtime] = pd.read_csv(io.StringIO(result.stdout))
    for command in ("predict", "tta"):
        keras_df, onnx_df = frames[command, "keras"], frames[command, "onnx"]
        assert list(onnx_df["label"]) == list(keras_df["label"]) and len(onnx_df) == 6
        np.testing.assert_allclose(onnx_df["p_dim"], keras_df["p_dim"], atol=1e-4)


@pytest.mark.tensorflow
def test_auto_takes_onnx_only_when_export_recorded_it(world, exported, tmp_path):
    from imgkit.bundle import load_bundle
    from imgkit.infer.runtime import use_runtime

    assert use_runtime(load_bundle(exported), "auto") == "onnx"
    assert use_runtime(load_bundle(exported), "keras") == "keras"
    # The command says which runtime auto took, on stderr; the CSV on stdout is clean.
    result = _run("predict", exported, world["photos"], "-o", "-")
    assert result.exit_code == 0, result.output
    assert "runtime onnx (auto" in result.stderr and "runtime" not in result.stdout
    result = _run("predict", exported, world["photos"], "-o", "-", "--runtime", "onnx")
    assert "runtime onnx (auto" not in result.stderr
    # A model.onnx imgkit.json does not vouch for (left from an earlier model).
    stale = Path(shutil.copytree(exported, tmp_path / "stale"))
    meta = _meta(stale)
    meta["exports"]["onnx"]["sha256"] = "0" * 64
    (stale / "imgkit.json").write_text(json.dumps(meta), encoding="utf-8")
    assert use_runtime(load_bundle(stale), "auto") == "keras"
    result = _run("predict", stale, stale, "--runtime", "onnx")
    assert result.exit_code == 1 and "export it again" in result.output


def test_runtime_onnx_without_model_onnx_is_one_line(world, tmp_path):
    run = _copy(world, tmp_path)
    result = _run("predict", run, tmp_path, "--runtime", "onnx")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "no model.onnx in the bundle" in result.output and "imgkit export" in result.output


@pytest.mark.tensorflow
def test_onnx_runtime_imports_no_tensorflow(exported, world):
    code = (
        "import sys\n"
        "from imgkit.commands import main\n"
        f"rc = main(['predict', {str(exported)!r}, {str(world['photos'])!r}, "
        "'--runtime', 'onnx', '-o', '-'])\n"
        "assert rc == 0, rc\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 7


# --- failures leave nothing behind ---------------------------------------------------


@pytest.mark.tensorflow
def test_parity_failure_leaves_nothing_behind(world, tmp_path, monkeypatch):
    need_module("onnxruntime", "needs the export extra (onnxruntime)")
    need_module("tf2onnx", "needs the export extra (tf2onnx)")
    from imgkit.export import exporter

    real = exporter.runner

    def off_for_savedmodel(fmt, path):
        run = real(fmt, path)
        return (lambda x: run(x) + 1e-3) if fmt == "savedmodel" else run

    monkeypatch.setattr(exporter, "runner", off_for_savedmodel)
    run = _copy(world, tmp_path)
    before = sorted(p.name for p in run.iterdir()), (run / "imgkit.json").read_bytes()
    result = _run("export", run, "-f", "onnx,savedmodel")
    assert result.exit_code == 3, result.output
    assert "savedmodel export differs from Keras by 0.001" in result.output
    assert "nothing was written" in result.output and "Traceback" not in result.output
    # onnx passed, but with several formats it is all or nothing.
    after = sorted(p.name for p in run.iterdir()), (run / "imgkit.json").read_bytes()
    assert after == before
    assert not [p for p in run.parent.iterdir() if ".part" in p.name]


@pytest.mark.tensorflow
def test_missing_extra_is_one_line(world, tmp_path, monkeypatch):
    import importlib.util

    from imgkit.export import formats
    from imgkit.infer import runtime

    real = importlib.util.find_spec

    def without_onnx(name, *args):
        return None if name in ("onnxruntime", "tf2onnx") else real(name, *args)

    monkeypatch.setattr(formats.importlib.util, "find_spec", without_onnx)
    run = _copy(world, tmp_path)
    result = _run("export", run, "--format", "onnx")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "needs the export extra" in result.output
    assert 'pip install -e ".[export]"' in result.output
    assert sorted(p.name for p in run.iterdir()) == ["imgkit.json", "model.keras"]
    # --runtime onnx names the same extra; auto quietly uses Keras.
    (run / "model.onnx").write_bytes(b"")
    monkeypatch.setattr(runtime, "file_sha256", lambda path: "recorded")
    meta = _meta(run)
    meta["exports"] = {"onnx": {"sha256": "recorded", "file": "model.onnx"}}
    (run / "imgkit.json").write_text(json.dumps(meta), encoding="utf-8")
    result = _run("predict", run, world["photos"], "--runtime", "onnx")
    assert result.exit_code == 1
    assert 'needs onnxruntime, in the export extra: pip install -e ".[export]"' in result.output


def test_another_keras_backend_is_one_line(world, tmp_path, monkeypatch):
    from imgkit.export import formats

    monkeypatch.setattr(formats, "_backend", lambda: "jax")
    run = _copy(world, tmp_path)
    for fmt in formats.FORMATS:
        result = _run("export", run, "-f", fmt)
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert "needs Keras's TensorFlow backend (this is jax)" in result.output
        assert "KERAS_BACKEND=tensorflow" in result.output
    assert sorted(p.name for p in run.iterdir()) == ["imgkit.json", "model.keras"]


@pytest.mark.tensorflow
def test_unknown_format_and_stray_quantize_are_refused(world, tmp_path):
    run = _copy(world, tmp_path)
    result = _run("export", run, "-f", "onnx,coreml")
    assert result.exit_code == 1 and "unknown export format 'coreml'" in result.output
    result = _run("export", run, "-f", "savedmodel", "--quantize", "int8")
    assert result.exit_code == 1
    assert "--quantize applies to --format onnx (int8) or tflite only" in result.output


# --- imgkit info ---------------------------------------------------------------------


@pytest.mark.tensorflow
def test_info_json_and_table(exported):
    result = _run("info", exported)
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert facts["task"] == "classification" and facts["classes"] == ["bright", "dim"]
    assert facts["num_classes"] == 2 and facts["input_size"] == [SIZE, SIZE]
    assert facts["channels"] == 1 and facts["temperature"] == 1.5 and facts["threshold"] is None
    assert facts["train_args"] == {"epochs": 3, "lr": 0.001}
    assert facts["metrics"] == {"test_accuracy": 0.75}
    onnx = facts["exports"]["onnx"]
    assert onnx["present"] and onnx["parity"]["labels_agree"]
    files = facts["size"]["files"]
    assert files["model.keras"] > 0 and files["model.onnx"] > 0
    assert facts["size"]["total"] >= files["model.keras"] + files["model.onnx"]
    assert "export onnx" in result.stderr and "classification" in result.stderr


def test_info_imports_no_tensorflow(world):
    code = (
        "import sys\n"
        "from imgkit.commands import main\n"
        f"assert main(['info', {str(world['pristine'])!r}]) == 0\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["model"] == "tiny"


def test_info_of_a_non_bundle_is_one_line(tmp_path):
    result = _run("info", tmp_path)
    assert result.exit_code == 1 and "not a model bundle" in result.output
