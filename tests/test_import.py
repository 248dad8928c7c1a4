"""``imgkit import``: models made elsewhere become bundles that predict uses unchanged.

The main case is seed 000's: a Sequential Keras model saved as a legacy .h5, taking
(28, 28) pixels scaled to 0-1, trained on light things on black, then asked about
photos on white. Here it is a Flatten/Dense model trained for a few seconds on bars:
class k is a bright bar in band k, which it learns exactly, so what predict says
about dark bars on white photos shows whether the import scaled, reshaped and
inverted the way the seed's own script did.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import invoke, one_line_error
from PIL import Image

from imgkit.bundle import TRUST_ENV, load_bundle
from imgkit.errors import BadInputError, OutputExistsError
from imgkit.models.foreign import PIXEL_RANGES, Foreign, wrap
from imgkit.train.importing import import_model

CLASSES = [f"band{k}" for k in range(10)]


def bars(labels, size: int = 28, seed: int = 0, light_background: bool = False) -> np.ndarray:
    """(n, size, size) uint8: a bar across band ``label`` of 10, on noise."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 40, (len(labels), size, size)).astype(np.float64)
    band = size / 14
    for i, k in enumerate(labels):
        top = round((2 + 2 * k) * band / 2)
        x[i, top : top + max(2, round(band)), size // 7 : size - size // 7] = rng.integers(180, 255)
    x = x.astype(np.uint8)
    return 255 - x if light_background else x


@pytest.fixture(scope="module")
def seed_h5(tmp_path_factory):
    """A seed-000-style model: Sequential, (28, 28) input, pixels / 255, softmax, .h5."""
    import keras

    keras.utils.set_random_seed(0)
    y = np.arange(600) % 10
    x = bars(y).astype(np.float32) / 255.0
    model = keras.Sequential(
        [
            keras.Input((28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=8, batch_size=60, verbose=0)
    path = tmp_path_factory.mktemp("seed") / "fashion_mnist_model.h5"
    model.save(path)
    return path


@pytest.fixture(autouse=True)
def no_trust_in_env(monkeypatch):
    monkeypatch.delenv(TRUST_ENV, raising=False)


def _photos(folder: Path, labels) -> Path:
    """User photos: dark bars on white, RGB, at twice the size (the seed's 'inv' folder)."""
    folder.mkdir()
    for i, (k, a) in enumerate(
        zip(labels, bars(labels, 56, seed=5, light_background=True), strict=True)
    ):
        Image.fromarray(a).convert("RGB").save(folder / f"{i:02d}_band{k}.png")
    return folder


def _predict(run, photos, *extra) -> pd.DataFrame:
    result = invoke("predict", run, photos, *extra)
    assert result.exit_code == 0, result.output
    return pd.read_csv(io.StringIO(result.stdout))


def test_seed_h5_imports_and_predicts_photos_on_white(seed_h5, tmp_path):
    run = tmp_path / "seed000"
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(CLASSES) + "\n", encoding="utf-8")
    result = invoke(
        "import", seed_h5, "-o", run, "--classes", classes, "--pixels", "0-1",
        "--polarity", "dark",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(run)
    assert "28x28x1 input" in result.stderr
    assert sorted(p.name for p in run.iterdir()) == ["imgkit.json", "model.keras"]
    meta = json.loads((run / "imgkit.json").read_text())
    assert meta["classes"] == CLASSES and meta["model"] == "imported"
    assert meta["input_size"] == [28, 28] and meta["channels"] == 1
    assert meta["pixels"]["scale"] == pytest.approx(1 / 255) and meta["pixels"]["inside_model"]
    assert meta["polarity"] == "dark" and meta["output"] == "softmax"
    assert meta["imported"]["format"] == "h5" and meta["imported"]["added"] is None
    assert meta["imported"]["reload_max_abs_diff"] < 1e-6

    labels = list(range(10))
    photos = _photos(tmp_path / "inv", labels)
    df = _predict(run, photos)
    assert list(df["label"]) == [f"band{k}" for k in labels]
    np.testing.assert_allclose(df[[f"p_{c}" for c in CLASSES]].sum(axis=1), 1, atol=1e-5)
    # Not inverted (--polarity none), dark bars on white mean nothing to it.
    plain = tmp_path / "plain"
    result = invoke("import", seed_h5, "-o", plain, "--classes", ",".join(CLASSES),
                    "--pixels", "0-1")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (_predict(plain, photos)["label"] != df["label"]).sum() >= 5
    # tta takes it as it is too.
    result = invoke("tta", run, photos, "-n", "2")
    assert result.exit_code == 0, result.output
    assert list(pd.read_csv(io.StringIO(result.stdout))["label"]) == list(df["label"])


def test_rerun_is_refused_and_overwrite_replaces(seed_h5, tmp_path):
    run = tmp_path / "run"
    args = ["import", seed_h5, "-o", run, "--classes", ",".join(CLASSES), "--pixels", "0-1"]
    assert invoke(*args).exit_code == 0
    one_line_error(invoke(*args), "already holds a model bundle", "--overwrite")
    result = invoke(*args, "--polarity", "light", "--overwrite")
    assert result.exit_code == 0, result.output
    assert json.loads((run / "imgkit.json").read_text())["polarity"] == "light"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run.")]


@pytest.mark.parametrize(
    "classes, message",
    [
        ("a,b,c", "10 output units but --classes names 3"),
        ("a", "at least 2"),
        ("a,a,b,c,d,e,f,g,h,i", "repeated"),
    ],
)
def test_classes_must_fit_the_output(seed_h5, tmp_path, classes, message):
    result = invoke("import", seed_h5, "-o", tmp_path / "r", "--classes", classes,
                    "--pixels", "0-1")  # fmt: skip
    one_line_error(result, message)
    assert not (tmp_path / "r").exists()


def test_pixels_is_required(seed_h5, tmp_path):
    result = invoke("import", seed_h5, "-o", tmp_path / "r", "--classes", ",".join(CLASSES))
    assert result.exit_code == 2 and "--pixels" in result.output


def _save(model, path: Path) -> Path:
    model.save(path)
    return path


def _logits(tmp_path, units: int, shape=(8, 8, 3)) -> Path:
    import keras

    keras.utils.set_random_seed(1)
    inputs = keras.Input(shape)
    x = keras.layers.GlobalAveragePooling2D()(inputs) if len(shape) == 3 else inputs
    out = keras.layers.Dense(units)(keras.layers.Flatten()(x))
    return _save(keras.Model(inputs, out), tmp_path / f"logits{units}.keras")


@pytest.mark.parametrize("units", [1, 3])
def test_logits_get_a_softmax_or_sigmoid(tmp_path, units):
    classes = ["a", "b"] if units == 1 else ["a", "b", "c"]
    meta = import_model(_logits(tmp_path, units), tmp_path / "r", classes=classes, pixels="-1-1")
    assert meta["output"] == ("sigmoid" if units == 1 else "softmax")
    assert meta["imported"]["activation"] == "linear"
    assert meta["imported"]["added"] == meta["output"]
    bundle = load_bundle(tmp_path / "r")
    x = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3)).astype(np.float32)
    p = bundle.model.predict_on_batch(x)
    assert p.shape == (5, units) and (p >= 0).all() and (p <= 1).all()
    if units == 3:
        np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-5)


def test_two_sigmoid_classes_and_wrong_counts(tmp_path):
    with pytest.raises(BadInputError, match="1 output unit .* but --classes names 3"):
        import_model(_logits(tmp_path, 1), tmp_path / "r", classes=["a", "b", "c"], pixels="0-1")


@pytest.mark.parametrize("pixels", sorted(PIXEL_RANGES))
def test_pixel_scaling_goes_inside_the_model(pixels):
    import keras

    inputs = keras.Input((2, 2, 3))
    core = keras.Model(inputs, keras.layers.Flatten()(inputs))
    spec = PIXEL_RANGES[pixels]
    wrapped = wrap(Foreign(core, "keras", (2, 2, 3)), pixels, "classification", activation="linear")
    first = wrapped.model.get_layer("caffe" if pixels == "caffe" else "scaling")
    probe = keras.Model(wrapped.model.input, first.output)
    x = np.arange(12, dtype=np.float32).reshape(1, 2, 2, 3) * 20
    got = probe.predict_on_batch(x)
    if pixels == "caffe":
        want = x[..., ::-1] - np.asarray(spec["mean"], dtype=np.float32)
    else:
        want = x * spec["scale"] + spec["offset"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_open_and_flat_inputs_need_a_size(tmp_path):
    import keras

    inputs = keras.Input((None, None, 1))
    out = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(inputs))
    open_model = _save(keras.Model(inputs, out), tmp_path / "open.keras")
    with pytest.raises(BadInputError, match="input height is open; give it with --size"):
        import_model(open_model, tmp_path / "r1", classes=["a", "b"], pixels="0-1")
    meta = import_model(
        open_model, tmp_path / "r1", classes=["a", "b"], pixels="0-1", size=(20, 24)
    )
    assert meta["input_size"] == [20, 24] and meta["channels"] == 1

    flat = keras.Input((48,))
    flat_model = _save(
        keras.Model(flat, keras.layers.Dense(2, activation="softmax")(flat)),
        tmp_path / "flat.keras",
    )
    with pytest.raises(BadInputError, match="takes 48 flat values, not 6x6x1"):
        import_model(flat_model, tmp_path / "r2", classes=["a", "b"], pixels="0-1", size=(6, 6))
    meta = import_model(
        flat_model, tmp_path / "r2", classes=["a", "b"], pixels="0-1", size=(4, 4), channels=3
    )
    assert meta["input_size"] == [4, 4] and meta["channels"] == 3
    p = load_bundle(tmp_path / "r2").model.predict_on_batch(np.zeros((1, 4, 4, 3)))
    assert p.shape == (1, 2)


def test_inputs_and_outputs_imgkit_cannot_use(tmp_path, seed_h5):
    import keras

    wide = keras.Input((4, 4, 4))
    out = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(wide))
    path = _save(keras.Model(wide, out), tmp_path / "four.keras")
    result = invoke("import", path, "-o", tmp_path / "r", "--classes", "a,b", "--pixels", "0-1")
    one_line_error(result, "takes 4 channels; imgkit feeds 1 (grey) or 3 (RGB)")

    many = keras.Input((4, 4, 1))
    out = keras.layers.Dense(3, activation="sigmoid")(keras.layers.Flatten()(many))
    path = _save(keras.Model(many, out), tmp_path / "multi.keras")
    result = invoke("import", path, "-o", tmp_path / "r", "--classes", "a,b,c", "--pixels", "0-1")
    one_line_error(result, "3 sigmoid units (multi-label)")

    result = invoke("import", seed_h5, "-o", tmp_path / "r", "--classes", ",".join(CLASSES),
                    "--pixels", "0-1", "--size", "32x32")  # fmt: skip
    one_line_error(result, "input height is 28, but --size says 32")
    (tmp_path / "notes.txt").write_text("hello")
    result = invoke("import", tmp_path / "notes.txt", "-o", tmp_path / "r", "--classes", "a,b",
                    "--pixels", "0-1")  # fmt: skip
    one_line_error(result, "unknown model format '.txt'")


@pytest.mark.filterwarnings("ignore:The object being serialized includes a `lambda`")
def test_code_is_refused_unless_trusted(tmp_path):
    import keras

    inputs = keras.Input((4, 4, 1))
    x = keras.layers.Lambda(lambda t: t * 2.0, name="double")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    for name in ("lam.keras", "lam.h5"):
        path = _save(model, tmp_path / name)
        args = ["import", path, "-o", tmp_path / name.replace(".", "_"), "--classes", "a,b",
                "--pixels", "0-1"]  # fmt: skip
        one_line_error(invoke(*args), "contains code (a Lambda layer 'double')", "--trust-code")
        assert not (tmp_path / name.replace(".", "_")).exists()
        result = invoke(*args, "--trust-code")
        assert result.exit_code == 0, result.output
    # The bundle carries the code on: predict asks for the same trust.
    with pytest.raises(Exception, match="contains code"):
        load_bundle(tmp_path / "lam_keras")
    assert load_bundle(tmp_path / "lam_keras", trust=True).model is not None


@pytest.mark.tensorflow  # a SavedModel, and TFSMLayer to run it
def test_savedmodel_needs_trust_and_predicts_like_the_original(tmp_path, monkeypatch):
    import keras

    keras.utils.set_random_seed(2)
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
    original = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    original.export(str(tmp_path / "exported"), verbose=False)
    monkeypatch.chdir(tmp_path)
    args = ["import", "exported", "-o", "run", "--classes", "a,b,c", "--pixels", "0-255"]
    one_line_error(invoke(*args), "a TensorFlow SavedModel graph", "--trust-code")
    result = invoke(*args, "--trust-code")
    assert result.exit_code == 0, result.output
    assert json.loads(Path("run/imgkit.json").read_text())["imported"]["format"] == "savedmodel"
    assert (Path("run") / "savedmodel" / "saved_model.pb").is_file()
    Path("imgs").mkdir()
    rng = np.random.default_rng(3)
    arrays = rng.integers(0, 256, (3, 6, 6, 3)).astype(np.uint8)
    for i, a in enumerate(arrays):
        Image.fromarray(a).save(f"imgs/{i}.png")
    one_line_error(invoke("predict", "run", "imgs"), "a SavedModel layer")
    df = _predict("run", "imgs", "--trust-code")
    want = original.predict_on_batch(arrays.astype(np.float32))
    np.testing.assert_allclose(df[["p_a", "p_b", "p_c"]].to_numpy(), want, atol=1e-5)


def test_segmentation_model_imports_and_segments(tmp_path, monkeypatch):
    import keras

    inputs = keras.Input((None, None, 1))
    conv = keras.layers.Conv2D(1, 1)  # logits: 10 * (x - 0.5), object where bright
    model = keras.Model(inputs, conv(inputs))
    conv.set_weights([np.full((1, 1, 1, 1), 10.0), np.array([-5.0])])
    path = _save(model, tmp_path / "seg.keras")
    with pytest.raises(BadInputError, match="--classes"):
        import_model(path, tmp_path / "r", classes=["x", "y"], pixels="0-1", task="segment",
                     size=(8, 8))  # fmt: skip
    monkeypatch.chdir(tmp_path)
    result = invoke("import", path, "-o", "seg", "--task", "segment", "--pixels", "0-1",
                    "--size", "8")  # fmt: skip
    assert result.exit_code == 0, result.output
    meta = json.loads(Path("seg/imgkit.json").read_text())
    assert meta["task"] == "segmentation" and meta["imported"]["added"] == "sigmoid"
    Path("imgs").mkdir()
    img = np.zeros((16, 16), dtype=np.uint8)
    img[:, 8:] = 255
    Image.fromarray(img).save("imgs/half.png")
    result = invoke("segment", "seg", "imgs", "-o", "masks")
    assert result.exit_code == 0, result.output
    mask = np.asarray(Image.open("masks/half.png"))
    assert mask.shape == (16, 16) and mask[:, :6].max() == 0 and mask[:, 10:].min() == 255


def test_output_folder_that_is_not_a_bundle_is_left_alone(seed_h5, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(OutputExistsError, match="not a model bundle"):
        import_model(seed_h5, out, classes=CLASSES, pixels="0-1", overwrite=True)
    assert (out / "keep.txt").read_text() == "x"
