"""imgkit explain: heatmaps that point at what decides the class.

The known-answer case: a tiny CNN trained on images whose class is a small square's
shade (bright or dark) at a random place in grey noise. A heatmap that explains that
model must put its peak on the square for most images; the image centre, the
baseline, rarely is.
"""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from PIL import Image

from imgkit.bundle import load_bundle
from imgkit.infer.explain import (
    METHODS,
    Explainer,
    ExplainOptions,
    class_logit,
    occlusion_geometry,
    occlusion_map,
)
from tests.cli_helpers import invoke
from tests.tiny_bundles import _save, bundle_meta, save_classifier

SIDE, OBJECT = 24, 6
CLASSES = ["bright", "dark"]


def scenes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images, labels, boxes as top,left): a bright or dark square on grey noise."""
    rng = np.random.default_rng(seed)
    x = rng.integers(70, 180, size=(n, SIDE, SIDE, 1))
    y = rng.integers(0, 2, size=n)
    boxes = rng.integers(0, SIDE - OBJECT + 1, size=(n, 2))
    for i, (top, left) in enumerate(boxes):
        x[i, top : top + OBJECT, left : left + OBJECT] = 245 if y[i] == 0 else 10
    return x.astype(np.uint8), y, boxes


def _model():
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIDE, SIDE, 1))
    x = layers.Rescaling(1 / 255)(inputs)
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="first_conv")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="last_conv")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(2, activation="softmax")(x))


@pytest.fixture(scope="module")
def square_run(tmp_path_factory):
    """A bundle of the CNN trained on :func:`scenes` (a few seconds)."""
    x, y, _ = scenes(480, seed=1)
    model = _model()
    import keras

    model.compile(keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    model.fit(x.astype("float32"), y, epochs=8, batch_size=32, verbose=0)
    meta = bundle_meta(classes=CLASSES, input_size=[SIDE, SIDE], model="squares", polarity=None)
    return _save(tmp_path_factory.mktemp("explain") / "run", model, meta)


def _in_box(point, box, margin: int = 1) -> bool:
    (x, y), (top, left) = point, box
    return left - margin <= x < left + OBJECT + margin and top - margin <= y < top + OBJECT + margin


@pytest.mark.parametrize("method", METHODS)
def test_heatmap_peak_lands_on_the_object(square_run, method):
    bundle = load_bundle(square_run)
    x, y, boxes = scenes(60, seed=7)
    explainer = Explainer(bundle, ExplainOptions(method=method))
    proba = explainer.predictor.proba(x)
    assert (proba.argmax(axis=1) == y).mean() >= 0.95  # the model learned the task
    maps = explainer.heatmaps(x, y)
    assert maps.shape == (60, SIDE, SIDE) and maps.max() <= 1.0 and maps.min() >= 0.0
    peaks = [np.unravel_index(int(m.argmax()), m.shape)[::-1] for m in maps]
    hits = np.mean([_in_box(p, b) for p, b in zip(peaks, boxes, strict=True)])
    centre = np.mean([_in_box((SIDE // 2, SIDE // 2), b) for b in boxes])
    assert hits >= 0.8, f"{method}: peak on the object for {hits:.0%} of images"
    assert centre < 0.4


def test_explain_writes_overlays_maps_and_rows(square_run, tmp_path):
    x, y, boxes = scenes(3, seed=11)
    photos = tmp_path / "photos"
    photos.mkdir()
    # Own sizes differ from the model's (stretch brings them back); a Kaggle-style name.
    names = ["cat.12.png", "b.png", "c.png"]
    for name, image in zip(names, x, strict=True):
        Image.fromarray(image[..., 0]).resize((48, 36), Image.Resampling.NEAREST).save(
            photos / name
        )
    (photos / "notes.txt").write_text("not an image")
    out = tmp_path / "why"
    result = invoke("explain", square_run, photos, "-o", out, "--save-maps")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["path"].rsplit("/", 1)[-1] for r in rows] == sorted(names)
    for name in names:
        assert (out / name).is_file()
        with Image.open(out / "maps" / name) as m:
            assert m.size == (48, 36) and m.mode == "L"
            assert np.asarray(m).max() == 255
    first = rows[[r["path"].endswith("cat.12.png") for r in rows].index(True)]
    top, left = boxes[names.index("cat.12.png")]
    # The peak in the image's own pixels (2x wide, 1.5x tall) is on the square.
    assert _in_box((int(first["peak_x"]) / 2, int(first["peak_y"]) / 1.5), (top, left))
    assert first["label"] == first["explained"] == CLASSES[y[0]]


def test_class_option_explains_another_class(square_run, tmp_path):
    x, _, _ = scenes(1, seed=3)
    Image.fromarray(x[0, ..., 0]).save(tmp_path / "one.png")
    result = invoke(
        "explain", square_run, tmp_path / "one.png", "-o", tmp_path / "o", "--class", "dark"
    )
    assert result.exit_code == 0, result.output
    assert next(csv.DictReader(io.StringIO(result.stdout)))["explained"] == "dark"
    result = invoke(
        "explain", square_run, tmp_path / "one.png", "-o", tmp_path / "o", "--class", "cat"
    )
    assert result.exit_code == 1 and "bright, dark" in result.output


def test_a_model_without_a_spatial_layer_gets_one_line(tmp_path, make_image):
    run = save_classifier(tmp_path / "run")  # Rescaling, pooling, Dense: nothing spatial
    image = make_image(tmp_path / "a.png", size=(8, 8), mode="L")
    result = invoke("explain", run, image, "-o", tmp_path / "o", "--method", "gradcam")
    assert result.exit_code == 1
    assert "no spatial layer" in result.output and "--method occlusion" in result.output
    assert "Traceback" not in result.output
    # Occlusion needs none: it runs on the same bundle.
    result = invoke("explain", run, image, "-o", tmp_path / "o")
    assert result.exit_code == 0, result.output


def test_layer_option_and_shards(square_run, tmp_path):
    x, _, _ = scenes(5, seed=5)
    for i, image in enumerate(x):
        write = tmp_path / "in" / f"{i}.png"
        write.parent.mkdir(exist_ok=True)
        Image.fromarray(image[..., 0]).save(write)
    args = [tmp_path / "in", "-o", tmp_path / "o", "--method", "gradcam"]
    parts = [
        invoke("explain", square_run, *args, "--layer", "first_conv", "--shard", s)
        for s in ("1/2", "2/2")
    ]
    assert all(p.exit_code == 0 for p in parts), [p.output for p in parts]
    whole = invoke("explain", square_run, *args, "--layer", "first_conv")
    assert parts[0].stdout + parts[1].stdout == whole.stdout
    assert whole.stdout.count("\n") == 6  # a header and five rows
    bad = invoke("explain", square_run, *args, "--layer", "nope")
    assert bad.exit_code == 1 and "last_conv" in bad.output


@pytest.mark.parametrize(
    ("name", "size", "layer", "grid"),
    [
        # The default mobilenetv2 ends its backbone at block 13: a 6x6 map at 96 px.
        ("mobilenetv2", 96, "backbone/block_13_expand_relu", 6),
        ("vgg16", 64, "backbone/block5_conv3", 4),
        ("fashion-cnn", 28, "re_lu", 3),  # its last ReLU (Keras numbers the name)
    ],
)
def test_target_layer_is_found_inside_nested_backbones(name, size, layer, grid):
    from imgkit.infer.cam import find_layer, walk_layers
    from imgkit.models import create_model

    options = {} if name == "fashion-cnn" else {"weights": "none"}
    model = create_model(name, 3, (size, size), **options)
    found = find_layer(model)
    path = next(p for p, candidate in walk_layers(model) if candidate is found)
    assert path == layer or (path.startswith(layer) and "/" not in layer)
    assert tuple(found.output.shape[1:3]) == (grid, grid)


def test_occlusion_geometry_scales_with_the_side():
    assert occlusion_geometry((96, 96)) == ((16, 24), 8, 8.0)
    sides, stride, sigma = occlusion_geometry((224, 300))
    assert sides == (37, 56) and stride == 19 and sigma == pytest.approx(224 / 12)


def test_occlusion_peaks_where_the_hiding_squares_overlap():
    """Only hiding one pixel near the corner matters: the squares that lower the class
    all cover it, so their summed drops peak on it. (The mean over the covering
    squares is as high in the corner, which only those squares covered, and the
    first pixel in reading order won.)"""
    image = np.zeros((SIDE, SIDE, 1), dtype=np.uint8)
    y0, x0 = 3, 3
    image[y0, x0] = 255

    def proba(copies):
        hidden = copies[:, y0, x0, 0] != 255
        return np.where(hidden[:, None], [0.5, 0.5], [0.9, 0.1])

    base = float(class_logit(np.array([[0.9, 0.1]]), 0)[0])
    heat = occlusion_map(proba, image, 0, base)
    y, x = np.unravel_index(int(heat.argmax()), heat.shape)
    assert abs(int(y) - y0) <= 1 and abs(int(x) - x0) <= 1, (y, x)
