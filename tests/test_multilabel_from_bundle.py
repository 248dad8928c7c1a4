"""``imgkit train DATA --weights RUN/model.keras`` across label kinds: a multi-label
dataset from a multi-label or a single-label bundle, a single-label one from a
multi-label bundle.

As in test_train_from_bundle.py: the images are tiny_data's squares, the sources
small-cnn trained two epochs on them (single-label: bright or dim; multi-label: that
class, plus "third" on every third image), and the runs from them train at a learning
rate of 1e-9, so every layer a run kept equals the source's to within 1e-6 (a fresh
model's differ by far more) and a replaced head shows as a new last Dense layer of the
new width on the same body.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from cli_helpers import invoke, one_line_error
from tiny_bundles import save_segmenter
from tiny_data import SIZE, make_dataset, squares

from imgkit.bundle import TRUST_ENV, load_bundle
from imgkit.data.dataset import Dataset
from imgkit.data.dataset_write import write_dataset
from imgkit.data.records import Record
from imgkit.train import trainer as training

STILL = ["--epochs", "1", "--batch-size", "8", "--lr", "1e-9"]
LABELS = ("bright", "dim", "third")


@pytest.fixture(autouse=True)
def no_trust_in_env(monkeypatch):
    monkeypatch.delenv(TRUST_ENV, raising=False)


def _multi(root, names=LABELS, third: bool = True):
    """tiny_data's train (16) and val (8) squares with label sets: the image's class
    (names[0] or names[1]), plus names[2] on every third image when ``third``."""
    records, arrays = [], {}
    for k, (split, n) in enumerate((("train", 16), ("val", 8))):
        x, y = squares(n, SIZE, seed=k)  # make_dataset's images, split by split
        arrays[split] = x
        for i, c in enumerate(y):
            labels = [names[c], *([names[2]] if third and i % 3 == 0 else [])]
            records.append(
                Record(path=f"images/{split}/{i}.png", label=" ".join(labels), split=split)
            )
    write_dataset(root, records, [], task="multilabel", seed=0)
    ds = Dataset.load(root)
    for split, x in arrays.items():
        ds.store_arrays(split, x)
    return root


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Datasets by name, and a small-cnn bundle trained on "single" and on "multi"."""
    base = tmp_path_factory.mktemp("world")
    make_dataset(base / "single", n_train=16, n_val=8, n_test=0)
    data = {
        "single": base / "single",
        "multi": _multi(base / "multi"),
        "renamed": _multi(base / "renamed", names=("b", "d", "t")),
        "two": _multi(base / "two", third=False),  # the single one's classes, multi-label
    }
    sources = {}
    for name in ("single", "multi"):
        sources[name] = base / f"run-{name}"
        training.train(data[name], sources[name], model="small-cnn", epochs=2, batch_size=8,
                       input_size=(SIZE, SIZE))  # fmt: skip
    return data, sources


def _weights(run) -> list[np.ndarray]:
    return load_bundle(run).model.get_weights()


def _last_activation(run) -> str:
    return load_bundle(run).model.layers[-1].activation.__name__


def _train_from(world, tmp_path, dataset: str, source: str, *args):
    data, sources = world
    run = tmp_path / "run"
    result = invoke("train", data[dataset], "-o", run, "--weights",
                    sources[source] / "model.keras", *STILL, *args)  # fmt: skip
    assert result.exit_code == 0, result.output
    return run, json.loads((run / "imgkit.json").read_text()), result


def _replaced_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if "replaced" in line]


@pytest.mark.parametrize("dataset", ["multi", "renamed"])
def test_a_multilabel_bundle_trains_further_on_multilabel_data(world, tmp_path, dataset):
    run, meta, result = _train_from(world, tmp_path, dataset, "multi")
    source = world[1]["multi"]
    classes = list(LABELS) if dataset == "multi" else ["b", "d", "t"]
    kept = dataset == "multi"
    assert meta["task"] == "multilabel" and meta["output"] == "multilabel"
    assert meta["classes"] == classes and sorted(meta["thresholds"]) == classes
    assert meta["model"] == "small-cnn" and meta["train_args"]["from_bundle"] == "small-cnn"
    head = "kept" if kept else "replaced"
    assert meta["from_bundle"] == {"model": "small-cnn", "path": str(source.resolve()),
                                   "head": head}  # fmt: skip
    assert len(_replaced_lines(result)) == (0 if kept else 1), result.stderr
    assert _last_activation(run) == "sigmoid"
    got, want = _weights(run), _weights(source)
    assert [w.shape for w in got] == [w.shape for w in want]
    # Kept: every layer is the source's. Replaced: all but the last Dense (kernel, bias).
    for a, b in zip(got if kept else got[:-2], want if kept else want[:-2], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    if not kept:
        assert max(np.abs(a - b).max() for a, b in zip(got[-2:], want[-2:], strict=True)) > 1e-3


@pytest.mark.parametrize("dataset", ["multi", "two"])
def test_a_single_label_bundle_gives_a_multilabel_run_its_body(world, tmp_path, dataset):
    # "two" has the bundle's own classes: the head is still replaced (softmax is not
    # one sigmoid per label).
    run, meta, result = _train_from(world, tmp_path, dataset, "single")
    source = world[1]["single"]
    n = 3 if dataset == "multi" else 2
    said = _replaced_lines(result)
    assert len(said) == 1 and "a single-label bundle" in said[0], result.stderr
    assert f"{n} labels" in said[0], said
    assert meta["task"] == "multilabel" and len(meta["thresholds"]) == n
    assert meta["from_bundle"]["head"] == "replaced"
    assert meta["from_bundle"]["path"] == str(source.resolve())
    assert _last_activation(run) == "sigmoid"
    p = load_bundle(run, "multilabel").model.predict_on_batch(squares(4)[0].astype(np.float32))
    assert p.shape == (4, n) and ((p > 0) & (p < 1)).all()
    got, want = _weights(run), _weights(source)
    assert [w.shape for w in got[-2:]] == [(want[-2].shape[0], n), (n,)]
    for a, b in zip(got[:-2], want[:-2], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_a_multilabel_bundle_gives_a_single_label_run_its_body(world, tmp_path):
    run, meta, result = _train_from(world, tmp_path, "single", "multi")
    source = world[1]["multi"]
    said = _replaced_lines(result)
    assert len(said) == 1 and "a multi-label bundle" in said[0], result.stderr
    assert meta["task"] == "classification" and meta["classes"] == ["bright", "dim"]
    assert meta["output"] in ("softmax", "sigmoid") and "thresholds" not in meta
    assert meta["from_bundle"] == {"model": "small-cnn", "path": str(source.resolve()),
                                   "head": "replaced"}  # fmt: skip
    units = 1 if meta["output"] == "sigmoid" else 2
    assert _last_activation(run) == meta["output"]
    got, want = _weights(run), _weights(source)
    assert [w.shape for w in got[-2:]] == [(want[-2].shape[0], units), (units,)]
    for a, b in zip(got[:-2], want[:-2], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    result = invoke("predict", run, world[0]["single"], "--split", "val", "-o", tmp_path / "p.csv")
    assert result.exit_code == 0, result.output


def _with_code(world, folder):
    """The multi-label source's imgkit.json beside a model with a Lambda layer."""
    import keras

    inputs = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.Lambda(lambda t: t / 255.0, name="scale")(inputs)
    x = keras.layers.Dense(8, activation="relu")(keras.layers.Flatten()(x))
    out = keras.layers.Dense(3, activation="sigmoid")(x)
    folder.mkdir()
    keras.Model(inputs, out).save(folder / "model.keras")
    meta = json.loads((world[1]["multi"] / "imgkit.json").read_text())
    (folder / "imgkit.json").write_text(json.dumps({**meta, "model": "lambda-net"}))
    return folder


def test_a_multilabel_bundle_with_code_needs_trust(world, tmp_path):
    source = _with_code(world, tmp_path / "code")
    out = tmp_path / "run"
    args = ["train", world[0]["multi"], "-o", out, "--weights", source / "model.keras", *STILL]
    one_line_error(invoke(*args), "a Lambda layer 'scale'", "--trust-code")
    assert not out.exists()
    result = invoke(*args, "--trust-code")
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "imgkit.json").read_text())
    assert meta["model"] == "lambda-net" and meta["from_bundle"]["head"] == "kept"


def test_what_cannot_start_a_multilabel_run_says_so_in_one_line(world, tmp_path):
    data, sources = world
    out = tmp_path / "run"
    seg = save_segmenter(tmp_path / "seg")
    one_line_error(invoke("train", data["multi"], "-o", out, "--weights", seg / "model.keras"),
                   "a segmentation bundle", "classification or multi-label")  # fmt: skip
    weights = sources["multi"] / "model.keras"
    one_line_error(invoke("train", data["multi"], "-o", out, "--weights", weights, "--size", "16"),
                   "takes --size 12x12, not 16x16")  # fmt: skip
    weighted = invoke("train", data["multi"], "-o", out, "--weights", weights,
                      "--class-weight", "balanced")  # fmt: skip
    one_line_error(weighted, "--class-weight", "multi-label")
    loose = tmp_path / "loose"
    loose.mkdir()
    shutil.copy(weights, loose / "model.keras")  # no imgkit.json: not a bundle
    one_line_error(invoke("train", data["multi"], "-o", out, "--weights", loose / "model.keras"),
                   "no model given")  # fmt: skip
    assert not out.exists()
