"""imgkit prep: sources, rejects, splits, refusals, and the fashion-mnist source."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_class_folder
from PIL import Image
from prep_helpers import manifest, ok, rejects, run
from synthetic import write_idx

from imgkit.data.bad_inputs import parse_max_bad
from imgkit.data.dataset import Dataset
from imgkit.data.prep import prepare
from imgkit.data.prep_options import PrepOptions
from imgkit.data.sources import fashion_mnist
from imgkit.errors import BadInputError, ImgkitError, OfflineError, OutputExistsError

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


def tree_hash(root: Path) -> str:
    """Names, sizes, modes and contents of everything under ``root``, links included."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            st = os.lstat(p)
            h.update(f"{p.relative_to(root)}|{st.st_mode}|{st.st_size}|{st.st_mtime_ns}".encode())
            if p.is_file() and not p.is_symlink():
                h.update(p.read_bytes())
    return h.hexdigest()


# --- class folders --------------------------------------------------------------------


def test_class_folder_to_dataset(tmp_path, class_folder):
    out = tmp_path / "data"
    result = ok(class_folder, "-o", out)
    assert result.stdout.strip() == str(out)  # stdout: only the path
    m = manifest(out)
    assert len(m) == 18
    assert set(m["label"]) == {"birds", "cats", "dogs"}
    info = json.loads((out / "dataset.json").read_text())
    assert info["classes"] == ["birds", "cats", "dogs"]
    assert set(m["split"]) == {"train", "val", "test"}
    # Paths are relative to the dataset folder and point at the user's files.
    ds = Dataset.load(out)
    assert all(p.resolve().is_relative_to(class_folder.resolve()) for p in ds.paths("train"))
    assert ds.arrays("train", (8, 8), 3).shape[1:] == (8, 8, 3)


def test_bad_files_are_rejected_with_reasons_and_the_run_goes_on(
    tmp_path, class_folder, make_image
):
    cats = class_folder / "cats"
    (cats / "empty.jpg").write_bytes(b"")
    (cats / "note.jpg").write_text("not a picture")
    good = (cats / "0.png").read_bytes()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(cats / "full.jpg")
    (cats / "cut.jpg").write_bytes((cats / "full.jpg").read_bytes()[:800])
    (cats / "full.jpg").unlink()
    (cats / "x.jpg").mkdir()
    (cats / "x.jpg" / "inside.png").write_bytes(good)  # a folder named x.jpg is walked into
    os.symlink(cats / "nowhere.png", cats / "dangling.png")
    (cats / ".DS_Store").write_bytes(b"\0")
    (cats / "._0.png").write_bytes(b"\0")
    (cats / "Thumbs.db").write_bytes(b"\0")
    make_image(cats / "cmyk.jpg", mode="CMYK", color=(0, 200, 200, 0))
    Image.fromarray(np.full((6, 6), 40000, np.uint16)).save(cats / "deep.png")
    make_image(cats / "alpha.png", mode="RGBA", color=(10, 20, 30, 100))
    make_image(cats / "pal.gif", mode="P")
    make_image(cats / "BIG NAME Ü.JPEG", fmt="JPEG")

    out = tmp_path / "data"
    result = ok(class_folder, "-o", out)
    reasons = rejects(out)
    assert "empty file" in reasons["empty.jpg"]
    assert "not an image" in reasons["note.jpg"]
    assert "truncated" in reasons["cut.jpg"]
    assert "broken symbolic link" in reasons["dangling.png"]
    for hidden in (".DS_Store", "._0.png", "Thumbs.db"):
        assert "hidden" in reasons[hidden]
    taken = {os.path.basename(p) for p in manifest(out)["path"]}
    for name in ("inside.png", "cmyk.jpg", "deep.png", "alpha.png", "pal.gif", "BIG NAME Ü.JPEG"):
        assert name in taken
    assert "rejects.csv" in result.stderr and "truncated" in result.stderr


def test_max_bad_stops_the_run_but_hidden_files_do_not_count(tmp_path, class_folder):
    for n in range(3):
        (class_folder / "dogs" / f"bad{n}.png").write_bytes(b"")
    (class_folder / "dogs" / ".DS_Store").write_bytes(b"\0")
    (class_folder / "dogs" / "notes.txt").write_text("x")
    out = tmp_path / "data"
    result = run(class_folder, "-o", out, "--max-bad", 2)
    assert result.exit_code == 1
    assert "--max-bad 2" in result.output and "empty file" in result.output
    assert not out.exists() and not list(tmp_path.glob(".data*"))  # nothing half-made
    assert run(class_folder, "-o", out, "--max-bad", "0.1").exit_code == 1  # 3 of 21 > 10%
    ok(class_folder, "-o", out, "--max-bad", 3)  # the hidden and .txt files are not "bad"
    assert run(class_folder, "-o", tmp_path / "d2", "--max-bad", "lots").exit_code == 2


def test_parse_max_bad():
    assert parse_max_bad("5") == (5, None)
    assert parse_max_bad("0") == (0, None)
    assert parse_max_bad("0.05") == (None, 0.05)
    assert parse_max_bad(None) == (None, None)
    with pytest.raises(BadInputError):
        parse_max_bad("1.5")


def test_splits_are_stratified_and_follow_the_seed(tmp_path):
    photos = make_class_folder(
        tmp_path / "photos", {"a": (0, 0, 0), "b": (255, 255, 255)}, per_class=20
    )
    a, b, c = (tmp_path / n for n in ("a", "b", "c"))
    ok(photos, "-o", a, "--val", 0.2, "--test", 0.1, "--seed", 1)
    ok(photos, "-o", b, "--val", 0.2, "--test", 0.1, "--seed", 1)
    ok(photos, "-o", c, "--val", 0.2, "--test", 0.1, "--seed", 2)
    ma, mb, mc = manifest(a), manifest(b), manifest(c)
    assert ma.equals(mb)
    assert not ma["split"].equals(mc["split"])
    counts = ma.groupby(["split", "label"]).size().to_dict()
    for label in ("a", "b"):
        assert counts[("train", label)] == 14
        assert counts[("val", label)] == 4
        assert counts[("test", label)] == 2


def test_existing_output_is_refused_unless_overwrite(tmp_path, class_folder):
    out = tmp_path / "data"
    ok(class_folder, "-o", out)
    result = run(class_folder, "-o", out)
    assert result.exit_code == 1 and "already exists" in result.output
    with pytest.raises(OutputExistsError):
        prepare([str(class_folder)], out)
    (out / "marker").write_text("old")
    ok(class_folder, "-o", out, "--overwrite")
    assert not (out / "marker").exists() and (out / "manifest.csv").is_file()
    # --overwrite never deletes a folder that is not a dataset.
    other = tmp_path / "precious"
    other.mkdir()
    (other / "thesis.txt").write_text("years of work")
    result = run(class_folder, "-o", other, "--overwrite")
    assert result.exit_code == 1 and "not a dataset folder" in result.output
    assert (other / "thesis.txt").read_text() == "years of work"


def test_inputs_are_never_modified(tmp_path, class_folder):
    (class_folder / "cats" / "broken.jpg").write_bytes(b"\xff\xd8\xff")
    os.symlink(class_folder / "nope.png", class_folder / "dogs" / "link.png")
    before = tree_hash(class_folder)
    ok(class_folder, "-o", tmp_path / "data")
    ok(class_folder, "-o", tmp_path / "data", "--overwrite")
    assert tree_hash(class_folder) == before


def test_output_inside_the_source_is_refused(tmp_path, class_folder):
    result = run(class_folder, "-o", class_folder / "data")
    assert result.exit_code == 1 and "inside the source" in result.output
    assert not (class_folder / "data").exists()


def test_plain_folder_is_unlabeled(tmp_path, make_image):
    for n in range(3):
        make_image(tmp_path / "loose" / f"img {n}.png")
    out = tmp_path / "data"
    ok(tmp_path / "loose", "-o", out)
    m = manifest(out)
    assert set(m["split"]) == {"unlabeled"} and set(m["label"]) == {""}


def test_no_usable_images_is_a_clear_error(tmp_path):
    (tmp_path / "junk" / "a").mkdir(parents=True)
    (tmp_path / "junk" / "a" / "x.jpg").write_bytes(b"")
    (tmp_path / "junk" / "b.txt").write_text("x")
    result = run(tmp_path / "junk", "-o", tmp_path / "data")
    assert result.exit_code == 1 and "no usable images" in result.output
    assert not (tmp_path / "data").exists()
    result = run(tmp_path / "nothing-here", "-o", tmp_path / "data")
    assert result.exit_code == 1 and "no such file or folder" in result.output


# --- CSV ------------------------------------------------------------------------------


def test_csv_with_bom_relative_paths_groups_and_rejects(tmp_path, class_folder):
    rows = ["path,label,group"]
    for label in ("cats", "dogs"):
        for n in range(6):
            rows.append(f"photos/{label}/{n}.png,{label},{label}{n // 2}")
    rows.append("photos/cats/missing.png,cats,x")
    rows.append("photos/birds/0.png,,y")
    rows.append(f"{class_folder / 'birds' / '1.png'},birds,")  # an absolute path
    csv = tmp_path / "labels.csv"
    csv.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(rows).encode())
    out = tmp_path / "data"
    ok(csv, "-o", out, "--val", 0.3, "--test", 0.3)
    m = manifest(out)
    assert len(m) == 13
    assert "group" in m.columns
    for _, part in m[m["group"] != ""].groupby("group"):
        assert part["split"].nunique() == 1  # a group never spans two splits
    reasons = rejects(out)
    assert "no such file" in reasons["missing.png"]
    assert "empty label" in reasons["0.png"]


def test_csv_split_column_is_honoured(tmp_path, class_folder):
    lines = ["Path,Label,Split"]
    for label in ("cats", "dogs"):
        for n in range(6):
            lines.append(f"{class_folder / label / f'{n}.png'},{label},{'test' if n < 2 else ''}")
    csv = tmp_path / "s.csv"
    csv.write_text("\n".join(lines) + "\n")
    ok(csv, "-o", tmp_path / "data")
    m = manifest(tmp_path / "data")
    names = m[m["split"] == "test"]["path"].map(os.path.basename)
    assert sorted(names) == ["0.png", "0.png", "1.png", "1.png"]


def test_csv_without_header_is_a_clear_error(tmp_path, class_folder):
    csv = tmp_path / "noheader.csv"
    csv.write_text(f"{class_folder / 'cats' / '0.png'},cats\n")
    result = run(csv, "-o", tmp_path / "data")
    assert result.exit_code == 1 and "header" in result.output


# --- IDX and fashion-mnist ------------------------------------------------------------


def test_idx_folder_source_with_limit(tmp_path):
    idx = write_idx(tmp_path / "idx", train=200, test=60)
    out = tmp_path / "data"
    ok(idx, "-o", out, "--limit", 100)
    m = manifest(out)
    assert (m["split"] == "test").sum() == 60
    assert (m["split"] != "test").sum() == 100
    info = json.loads((out / "dataset.json").read_text())
    assert info["classes"] == [str(k) for k in range(10)]


def test_fashion_mnist_offline_error(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "no-debian")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "no-keras"))

    def no_network():
        raise Exception("URL fetch failure on https://example: no network")

    monkeypatch.setattr(fashion_mnist, "_load_with_keras", no_network)
    with pytest.raises(OfflineError) as info:
        prepare(["fashion-mnist"], tmp_path / "data", PrepOptions(idx_dir=empty))
    message = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert "t10k-labels-idx1-ubyte.gz" in message and str(empty) in message
    result = run("fashion-mnist", "-o", tmp_path / "data", "--idx-dir", empty)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert not (tmp_path / "data").exists()


def test_fashion_mnist_from_keras_fallback_and_keras_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "no-debian")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    rng = np.random.default_rng(0)

    def fake_download():
        def part(n):
            return rng.integers(0, 255, (n, 28, 28), dtype=np.uint8), np.arange(n) % 10

        return part(50), part(20)

    monkeypatch.setattr(fashion_mnist, "_load_with_keras", fake_download)
    info = prepare(["fashion-mnist"], tmp_path / "a")
    assert info["counts"]["test"]["T-shirt/top"] == 2 and "keras" in info["sources"][0]

    write_idx(tmp_path / "keras" / "datasets" / "fashion-mnist", train=40, test=10)
    info = prepare(["fashion-mnist"], tmp_path / "b")
    assert info["images"] == 50 and "keras" in info["sources"][0]


@pytest.mark.needs(
    (DEBIAN_FASHION / "train-images-idx3-ubyte.gz").is_file(),
    reason="real Fashion-MNIST absent: apt-get install dataset-fashion-mnist",
)
def test_fashion_mnist_subset_from_debian_files(tmp_path):
    out = tmp_path / "fashion"
    result = ok("fashion-mnist", "-o", out, "--limit", 300, "--idx-dir", DEBIAN_FASHION)
    assert "T-shirt/top" in result.stderr
    ds = Dataset.load(out)
    assert ds.classes[-2:] == ["T-shirt/top", "Trouser"] and len(ds.classes) == 10
    m = ds.manifest
    assert (m["split"] == "test").sum() == 300
    assert (m["split"].isin(["train", "val"])).sum() == 300
    assert (m[m["split"] == "test"].groupby("label").size() == 30).all()
    assert all(p.startswith("images/test/") for p in m[m["split"] == "test"]["path"])
    # The cache was filled from the arrays and matches the PNGs written.
    for split in ("train", "val", "test"):
        assert ds.cache_file(split, (28, 28), 1).is_file()
    cached = ds.arrays("val", (28, 28), 1)
    with Image.open(ds.paths("val")[0]) as png:
        first = np.asarray(png)
    assert np.array_equal(cached[0, ..., 0], first)
    # A "/" in a class name stays in the label and never reaches a file name.
    shirts = m[m["label"] == "T-shirt/top"]["path"]
    assert all(p.count("/") == 3 for p in shirts)


def test_prep_of_a_folder_does_not_import_tensorflow(tmp_path, class_folder):
    code = (
        "import sys\n"
        "from imgkit.commands import main\n"
        f"rc = main(['prep', {str(class_folder)!r}, '-o', {str(tmp_path / 'd')!r}])\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'jax', 'torch') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_library_errors_are_imgkit_errors(tmp_path):
    with pytest.raises(ImgkitError):
        prepare([], tmp_path / "x")


def test_a_dataset_folder_is_not_a_source_but_its_manifest_is(tmp_path, class_folder):
    first = tmp_path / "first"
    ok(class_folder, "-o", first, "--seed", 3)
    result = run(first, "-o", tmp_path / "again")
    assert result.exit_code == 1 and "already a dataset folder" in result.output
    ok(first / "manifest.csv", "-o", tmp_path / "again")
    a, b = manifest(first), manifest(tmp_path / "again")
    assert a["split"].tolist() == b["split"].tolist()  # fixed splits kept
    assert Dataset.load(tmp_path / "again").paths("train")[0].is_file()


def test_names_with_line_breaks_are_refused_one_row_each(tmp_path, class_folder, make_image):
    # A carriage return is written unquoted into a CSV: the manifest row would split.
    for name in ("cats/we\rird.png", "dogs/new\nline.png", "dogs/both\r\n.png"):
        make_image(class_folder / name, color=(40, 40, 40))
    out = tmp_path / "data"
    ok(class_folder, "-o", out)
    table = manifest(out)
    assert len(table) == 18 and not table["path"].str.contains("[\r\n]").any()
    lines = (out / "rejects.csv").read_text().splitlines()
    assert len(lines) == 4, lines  # the header and one line per refused file
    got = rejects(out)
    for shown in ("we\\rird.png", "new\\nline.png", "both\\r\\n.png"):
        assert got[shown] == "name contains a line break, which manifest.csv cannot hold"
    assert len(Dataset.load(out).manifest) == 18


def test_masks_csv_with_nul_paths_rejects_those_rows(tmp_path):
    from seg_data import write_disc_pairs

    images, masks = write_disc_pairs(tmp_path / "src", n=4, size=(16, 16))
    csv = tmp_path / "pairs.csv"
    rows = [f"{images / f's{i:03d}.png'},{masks / f's{i:03d}.png'}" for i in range(4)]
    rows[1] = rows[1].replace("s001.png,", "s0\x0001.png,")  # the image path
    rows[2] = rows[2][:-4] + "\x00.png"  # the mask path
    csv.write_text("path,mask\n" + "\n".join(rows) + "\n")
    out = tmp_path / "data"
    result = run(images, "--masks", csv, "-o", out, "--val", "0", "--test", "0")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert sorted(os.path.basename(p) for p in manifest(out)["path"]) == ["s000.png", "s003.png"]
    got = rejects(out, basename=False)
    assert got[f"{csv}:3"] == "path contains a NUL character"
    assert got[f"{csv}:4"] == "mask contains a NUL character"
