"""Kaggle-style file-name labels: cat.12.jpg is a cat; 12.jpg is unlabeled."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import write_image
from prep_helpers import manifest, ok, rejects

from imgkit.data.sources import find_reader, kaggle_names
from imgkit.data.sources.kaggle_names import decide, name_label

COLOURS = {"cat": (200, 40, 40), "dog": (40, 200, 40), "bird": (40, 40, 200)}


def kaggle_folder(root: Path, labels=("cat", "dog"), per_label: int = 5) -> Path:
    for label in labels:
        for n in range(per_label):
            write_image(root / f"{label}.{n + 1}.jpg", color=COLOURS[label])
    return root


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("cat.12.jpg", "cat"),
        ("dog.7.JPG", "dog"),
        ("golden-retriever.3.png", "golden-retriever"),
        ("Cat_2.0.jpeg", "Cat_2"),
        ("12.jpg", None),
        ("cat.jpg", None),
        ("cat.12.txt", None),
        ("cat.x.jpg", None),
        ("1cat.2.jpg", None),
        ("my cat.1.jpg", None),
        ("cat.1.2.jpg", None),
    ],
)
def test_name_label(name, label):
    assert name_label(name) == label


def test_the_layout_rule():
    two = [f"{k}.{i}.jpg" for k in ("cat", "dog") for i in range(50)]
    assert decide(two) == (True, None)
    # One stray per 100 images is allowed (and rejected); in fewer than 100, none.
    assert decide([*two, "readme.jpg"])[0] is True
    assert decide([*two[:-2], "readme.jpg"])[0] is False
    labelled, warning = decide(["cat.1.jpg", "cat.2.jpg"])
    assert not labelled and "--name-labels" in warning and "'cat'" in warning
    labelled, warning = decide(["cat.1.jpg", "dog.2.jpg", "IMG_1.jpg", "IMG_2.jpg"])
    assert not labelled and "only 2 of 4" in warning
    assert decide(["1.jpg", "2.jpg"]) == (False, None)  # a Kaggle test set
    assert decide(["cat.1.jpg", "x.jpg"], name_labels=True) == (True, None)
    assert decide(two, name_labels=False) == (False, None)


def test_kaggle_named_folder_is_labelled_by_name(tmp_path):
    src = kaggle_folder(tmp_path / "train", per_label=10)
    (src / ".DS_Store").write_bytes(b"\0")
    assert find_reader(str(src)) is kaggle_names
    out = tmp_path / "data"
    ok(src, "-o", out, "--val", "0.2", "--test", "0")
    m = manifest(out)
    assert len(m) == 20 and set(m["label"]) == {"cat", "dog"}
    assert [name_label(os.path.basename(p)) for p in m["path"]] == list(m["label"])
    val = m[m["split"] == "val"]
    assert sorted(val["label"]) == ["cat", "cat", "dog", "dog"]  # stratified
    assert "hidden" in rejects(out)[".DS_Store"]


def test_uppercase_extensions_and_dashed_labels(tmp_path):
    src = tmp_path / "pets"
    for n in range(3):
        write_image(src / f"cat.{n}.JPG", fmt="JPEG")
        write_image(src / f"golden-retriever.{n}.PNG", fmt="PNG")
    ok(src, "-o", tmp_path / "data")
    assert set(manifest(tmp_path / "data")["label"]) == {"cat", "golden-retriever"}


def test_test_set_of_numeric_names_is_unlabeled(tmp_path):
    for n in range(1, 6):
        write_image(tmp_path / "test1" / f"{n}.jpg")
    ok(tmp_path / "test1", "-o", tmp_path / "data")
    m = manifest(tmp_path / "data")
    assert set(m["split"]) == {"unlabeled"} and set(m["label"]) == {""}
    assert sorted(int(Path(p).stem) for p in m["path"]) == [1, 2, 3, 4, 5]


def test_mixed_names_fall_back_to_unlabeled_with_a_warning(tmp_path):
    src = kaggle_folder(tmp_path / "mixed", per_label=2)
    for n in range(4):
        write_image(src / f"IMG_{n}.jpg")
    result = ok(src, "-o", tmp_path / "data")
    assert set(manifest(tmp_path / "data")["split"]) == {"unlabeled"}
    assert "warning:" in result.stderr and "--name-labels" in result.stderr


def test_name_labels_forces_labels_and_rejects_the_others(tmp_path):
    src = kaggle_folder(tmp_path / "mixed", per_label=3)
    write_image(src / "IMG_1.jpg")
    write_image(src / "7.jpg")
    out = tmp_path / "data"
    ok(src, "-o", out, "--name-labels")
    m = manifest(out)
    assert len(m) == 6 and set(m["label"]) == {"cat", "dog"}
    reasons = rejects(out)
    assert "not <label>.<id>.<ext>" in reasons["IMG_1.jpg"]
    assert "not <label>.<id>.<ext>" in reasons["7.jpg"]


def test_one_label_needs_name_labels(tmp_path):
    src = kaggle_folder(tmp_path / "cats", labels=("cat",))
    result = ok(src, "-o", tmp_path / "a")
    assert set(manifest(tmp_path / "a")["split"]) == {"unlabeled"}
    assert "--name-labels" in result.stderr
    # Two one-label sources together make a labelled set when asked for.
    dogs = kaggle_folder(tmp_path / "dogs", labels=("dog",))
    ok(src, dogs, "-o", tmp_path / "b", "--name-labels")
    assert set(manifest(tmp_path / "b")["label"]) == {"cat", "dog"}


def test_no_name_labels_reads_unlabeled(tmp_path):
    src = kaggle_folder(tmp_path / "train")
    ok(src, "-o", tmp_path / "data", "--no-name-labels")
    assert set(manifest(tmp_path / "data")["split"]) == {"unlabeled"}


def test_class_subfolders_win_over_names(tmp_path):
    kaggle_folder(tmp_path / "photos" / "pets")
    kaggle_folder(tmp_path / "photos" / "birds", labels=("bird",))
    ok(tmp_path / "photos", "-o", tmp_path / "data")
    assert set(manifest(tmp_path / "data")["label"]) == {"pets", "birds"}
