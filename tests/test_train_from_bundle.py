"""``imgkit train DATA --weights RUN/model.keras``: a finished bundle's model, trained further.

The sources are tiny: small-cnn trained two epochs on 12x12 squares, and a Conv/Dense
model imported with ``imgkit import``. The runs from them train at a learning rate of
1e-9, so the trained weights are the starting weights to within 1e-6: equal to the
source's means the run started from the source's weights (a fresh model's differ by
far more), and a replaced head shows as one new last layer on the same body.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from cli_helpers import invoke, one_line_error
from tiny_data import SIZE, make_dataset, squares

from imgkit.bundle import TRUST_ENV, load_bundle
from imgkit.data.dataset import Dataset
from imgkit.data.dataset_write import write_dataset
from imgkit.data.records import Record
from imgkit.train import trainer as training
from imgkit.train.importing import import_model

CLASSES = ["bright", "dim"]  # tiny_data's
STILL = ["--epochs", "1", "--batch-size", "8", "--lr", "1e-9"]


@pytest.fixture(autouse=True)
def no_trust_in_env(monkeypatch):
    monkeypatch.delenv(TRUST_ENV, raising=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "squares"
    make_dataset(root, n_train=16, n_val=8, n_test=0)
    return root


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    """The squares under three other class names (the third: every third image)."""
    root = tmp_path_factory.mktemp("three") / "shapes"
    x, y = squares(24)
    names = ["x", "y", "z"]
    labels = [names[2] if i % 3 == 2 else names[int(k)] for i, k in enumerate(y)]
    records = [
        Record(path=f"images/train/{i}.png", label=lab, split="train")
        for i, lab in enumerate(labels)
    ]
    write_dataset(root, records, [], seed=0)
    Dataset.load(root).store_arrays("train", x)
    return root


def _import_source(folder, lambda_layer: bool = False):
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    if lambda_layer:
        x = keras.layers.Lambda(lambda t: t * 2.0, name="double")(x)
    x = keras.layers.Dense(8, activation="relu")(keras.layers.Flatten()(x))
    out = keras.layers.Dense(2, activation="softmax")(x)
    folder.mkdir()
    keras.Model(inputs, out).save(folder / "mine.keras")
    run = folder / "run"
    import_model(folder / "mine.keras", run, classes=CLASSES, pixels="0-1", trust=lambda_layer)
    return run


@pytest.fixture(scope="module")
def sources(data, tmp_path_factory):
    """{"small-cnn": an imgkit bundle, "imported": an imported one}, both on CLASSES."""
    own = tmp_path_factory.mktemp("own") / "run"
    training.train(data, own, model="small-cnn", epochs=2, batch_size=8, input_size=(SIZE, SIZE))
    return {"small-cnn": own, "imported": _import_source(tmp_path_factory.mktemp("imp") / "m")}


def _weights(run) -> list[np.ndarray]:
    return load_bundle(run).model.get_weights()


@pytest.mark.parametrize("name", ["small-cnn", "imported"])
def test_same_classes_train_the_bundles_model_from_its_weights(sources, data, tmp_path, name):
    source = sources[name]
    run = tmp_path / "run"
    result = invoke("train", data, "-o", run, "--weights", source / "model.keras", *STILL)
    assert result.exit_code == 0, result.output
    assert "replaced" not in result.stderr
    meta = json.loads((run / "imgkit.json").read_text())
    before = json.loads((source / "imgkit.json").read_text())
    for key in ("model", "classes", "input_size", "channels", "output", "resize"):
        assert meta[key] == before[key], key
    assert meta["pixels"] == {**before["pixels"], "inside_model": True}
    assert meta["train_args"]["weights"] == str((source / "model.keras").resolve())
    assert meta["train_args"]["from_bundle"] == name
    assert meta["from_bundle"] == {"model": name, "path": str(source.resolve()), "head": "kept"}
    got, want = _weights(run), _weights(source)
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    if name == "small-cnn":
        # A fresh model, even from the seed the source started from, is far from it.
        import keras

        from imgkit.models import create_model

        keras.utils.set_random_seed(0)
        fresh = create_model("small-cnn", 2, (SIZE, SIZE), 1).get_weights()
        assert max(np.abs(a - b).max() for a, b in zip(fresh, want, strict=True)) > 1e-3


@pytest.mark.parametrize("name", ["small-cnn", "imported"])
def test_other_classes_get_a_new_last_layer_on_the_same_body(sources, three, tmp_path, name):
    source = sources[name]
    run = tmp_path / "run"
    result = invoke("train", three, "-o", run, "--weights", source / "model.keras", *STILL)
    assert result.exit_code == 0, result.output
    said = [line for line in result.stderr.splitlines() if "replaced" in line]
    assert len(said) == 1 and "3 classes" in said[0], result.stderr
    meta = json.loads((run / "imgkit.json").read_text())
    assert meta["classes"] == ["x", "y", "z"] and meta["output"] == "softmax"
    assert meta["from_bundle"]["head"] == "replaced" and meta["model"] == name
    bundle = load_bundle(run, "classification")
    p = bundle.model.predict_on_batch(squares(5)[0].astype(np.float32))
    assert p.shape == (5, 3)
    np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-5)
    got, want = _weights(run), _weights(source)
    assert [w.shape for w in got[-2:]] == [(want[-2].shape[0], 3), (3,)]
    for a, b in zip(got[:-2], want[:-2], strict=True):  # everything but the last Dense
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_a_run_from_a_bundle_resumes(sources, data, tmp_path):
    run = tmp_path / "run"
    weights = sources["imported"] / "model.keras"

    def interrupt(report):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        training.train(data, run, weights=weights, epochs=2, batch_size=8, on_epoch=interrupt)
    result = invoke("train", data, "-o", run, "--resume")
    assert result.exit_code == 0, result.output
    assert "resuming" in result.stderr and "epoch 2/2" in result.stderr
    meta = json.loads((run / "imgkit.json").read_text())
    assert meta["resumed"] and meta["epochs_run"] == 2 and meta["from_bundle"]["head"] == "kept"


def test_refusals(sources, data, tmp_path):
    weights = sources["small-cnn"] / "model.keras"
    out = tmp_path / "run"
    one_line_error(invoke("train", data, "-o", out, "--weights", weights, "--size", "16"),
                    "takes --size 12x12, not 16x16")  # fmt: skip
    one_line_error(invoke("train", data, "-o", out, "--weights", weights, "--channels", "3"),
                    "takes --channels 1, not 3")  # fmt: skip
    one_line_error(invoke("train", data, "-o", out, "--weights", weights, "--dropout", "0.1"),
                    "as it is; it takes no --dropout")  # fmt: skip
    # Another model named, or a model.keras without its imgkit.json: as before.
    one_line_error(invoke("train", data, "-o", out, "--weights", weights, "--model",
                           "fashion-cnn"), "trained from scratch")  # fmt: skip
    loose = tmp_path / "loose"
    loose.mkdir()
    shutil.copy(weights, loose / "model.keras")
    one_line_error(invoke("train", data, "-o", out, "--weights", loose / "model.keras"),
                    "no model given")  # fmt: skip
    assert not out.exists()


def test_a_model_with_code_is_refused_unless_trusted(data, tmp_path):
    source = _import_source(tmp_path / "lam", lambda_layer=True)
    out = tmp_path / "run"
    result = invoke("train", data, "-o", out, "--weights", source / "model.keras", *STILL)
    one_line_error(result, "a Lambda layer 'double'", "--trust-code")
    assert not out.exists()
    result = invoke("train", data, "-o", out, "--weights", source / "model.keras", *STILL,
                    "--trust-code")  # fmt: skip
    assert result.exit_code == 0, result.output
