"""Zip and tar sources: Kaggle archives, other layouts, and hostile archives.

Every test checks that the archive is unchanged and (for hostile ones) that nothing
was written outside the output folder.
"""

from __future__ import annotations

import hashlib
import io
import secrets
import stat
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import prep_helpers
import pytest
from PIL import Image
from prep_helpers import manifest, run

from imgkit.data.sources import archive, extract, find_reader
from imgkit.data.sources.archive_members import _Member
from imgkit.data.sources.archive_names import archive_stem, unsafe_path_reason
from imgkit.data.sources.extract import _Extractor

COLOURS = {"cat": (200, 40, 40), "dog": (40, 200, 40)}


# --- helpers ---------------------------------------------------------------------------


def image_bytes(colour=(120, 120, 120), fmt="JPEG", seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour) + rng.integers(-20, 20, (10, 12, 3)), 0, 255)
    buf = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def kaggle_members(per_label=10, folder="train/") -> dict[str, bytes]:
    return {
        f"{folder}{label}.{n}.jpg": image_bytes(colour, seed=n)
        for label, colour in COLOURS.items()
        for n in range(per_label)
    }


def make_zip(path: Path, members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return path


def tar_mode(path: Path) -> str:
    name = path.name
    for suffix, mode in ((".gz", "w:gz"), (".tgz", "w:gz"), (".bz2", "w:bz2"), (".xz", "w:xz")):
        if name.endswith(suffix):
            return mode
    return "w"


def make_tar(path: Path, members: dict[str, bytes], extra: list[tarfile.TarInfo] = ()) -> Path:
    with tarfile.open(path, tar_mode(path)) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for info in extra:
            tf.addfile(info)
    return path


def special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def prep(archive_path: Path, out: Path, *args, exit_code=0):
    """Run prep; check the archive is unchanged and nothing landed outside ``out``."""
    before_hash = digest(archive_path)
    root = archive_path.parent
    before = {f for f in files_under(root) if not f.startswith(out.name)}
    result = run(archive_path, "-o", out, *args)
    assert result.exit_code == exit_code, result.output
    assert digest(archive_path) == before_hash
    after = {f for f in files_under(root) if not f.startswith(out.name)}
    assert after == before, f"written outside the output folder: {after - before}"
    return result


def rejects(folder) -> dict[str, str]:
    return prep_helpers.rejects(folder, basename=False)


def reason_for(folder, member: str) -> str:
    found = [r for p, r in rejects(folder).items() if p.endswith(f":{member}")]
    assert found, f"{member} not in rejects.csv: {rejects(folder)}"
    return found[0]


@pytest.fixture
def evil_abs() -> Path:
    """An absolute path no test run will have made, for absolute-path members."""
    path = Path(f"/tmp/imgkit-evil-{secrets.token_hex(6)}.jpg")
    yield path
    assert not path.exists(), "an absolute-path member was written"


# --- Kaggle archives ---------------------------------------------------------------------


def test_kaggle_train_zip_is_labelled_and_split_stratified(tmp_path):
    members = kaggle_members(per_label=10)
    members["__MACOSX/train/._cat.0.jpg"] = b"\0\5\26\7"
    members["train/.DS_Store"] = b"\0"
    members["train/Thumbs.db"] = b"\0"
    src = make_zip(tmp_path / "train.zip", members)
    assert find_reader(str(src)) is archive
    out = tmp_path / "dvc"
    prep(src, out, "--val", "0.2", "--test", "0")
    m = manifest(out)
    assert len(m) == 20 and set(m["label"]) == {"cat", "dog"}
    assert all(p.startswith("images/train/train/") for p in m["path"])
    assert all((out / p).is_file() for p in m["path"])
    assert sorted(m[m["split"] == "val"]["label"]) == ["cat"] * 2 + ["dog"] * 2
    reasons = rejects(out)
    assert any(p.endswith("train.zip:__MACOSX/") and "hidden" in r for p, r in reasons.items())
    assert "hidden" in reason_for(out, "train/.DS_Store")
    assert "hidden" in reason_for(out, "train/Thumbs.db")


def test_kaggle_test_zip_is_unlabeled_and_keeps_the_ids(tmp_path):
    src = make_zip(tmp_path / "test1.zip", {f"test1/{n}.jpg": image_bytes() for n in range(1, 8)})
    out = tmp_path / "dvc-test"
    prep(src, out)
    m = manifest(out)
    assert set(m["split"]) == {"unlabeled"} and set(m["label"]) == {""}
    assert sorted(int(Path(p).stem) for p in m["path"]) == list(range(1, 8))


@pytest.mark.parametrize(
    "name", ["pets.tar.gz", "pets.tgz", "pets.tar", "pets.tar.bz2", "pets.tar.xz"]
)
def test_tar_archives_of_class_folders(tmp_path, name):
    members = {
        f"pets/{label}s/{n}.png": image_bytes(colour, fmt="PNG", seed=n)
        for label, colour in COLOURS.items()
        for n in range(4)
    }
    src = make_tar(tmp_path / name, members)
    out = tmp_path / "data"
    prep(src, out)
    m = manifest(out)
    assert len(m) == 8 and set(m["label"]) == {"cats", "dogs"}
    assert all(p.startswith("images/pets/pets/") for p in m["path"])


def test_kaggle_tar_gz_and_two_archives_of_one_name(tmp_path):
    src = make_tar(tmp_path / "train.tar.gz", kaggle_members(per_label=4, folder=""))
    zipped = make_zip(tmp_path / "train.zip", kaggle_members(per_label=3, folder="x/"))
    out = tmp_path / "data"
    before = digest(zipped)
    prep(src, out, zipped)
    assert digest(zipped) == before
    m = manifest(out)
    assert len(m) == 14 and set(m["label"]) == {"cat", "dog"}
    assert {p.split("/")[1] for p in m["path"]} == {"train", "train-2"}


def test_other_members_are_skipped_with_reasons(tmp_path):
    members = kaggle_members(per_label=3)
    members["train/notes.txt"] = b"hello"
    members["train/inner.zip"] = b"PK\5\6" + b"\0" * 18
    members["train/broken.jpg"] = b"\xff\xd8\xff"
    src = make_zip(tmp_path / "train.zip", members)
    out = tmp_path / "data"
    prep(src, out, "--name-labels")
    assert "not an image file type" in reason_for(out, "train/notes.txt")
    assert "archive inside the archive" in reason_for(out, "train/inner.zip")
    assert "not <label>.<id>" in reason_for(out, "train/broken.jpg")
    assert len(manifest(out)) == 6


def test_a_corrupt_image_inside_is_rejected_and_the_rest_goes_on(tmp_path):
    members = kaggle_members(per_label=3)
    members["train/cat.99.jpg"] = b"not a jpeg"
    src = make_zip(tmp_path / "train.zip", members)
    out = tmp_path / "data"
    prep(src, out)
    table = rejects(out)
    assert any(p.endswith("cat.99.jpg") and "not an image" in r for p, r in table.items())
    assert len(manifest(out)) == 6


# --- hostile archives --------------------------------------------------------------------


TRAVERSALS = ["../evil.jpg", "a/../../evil.jpg", "train/../../../evil.jpg", "..\\evil.jpg"]


def check_no_evil(tmp_path: Path) -> None:
    assert not [p for p in tmp_path.parent.rglob("evil*")], "a hostile member was written"


def test_hostile_tar_members_are_refused(tmp_path, evil_abs):
    root = tmp_path / "in"
    root.mkdir()
    members = kaggle_members(per_label=3)
    for name in [*TRAVERSALS, str(evil_abs)]:
        members[name] = image_bytes()
    extra = [
        special("train/link.jpg", tarfile.SYMTYPE, "/etc/passwd"),
        special("train/up.jpg", tarfile.SYMTYPE, "../../../evil.jpg"),
        special("train/hard.jpg", tarfile.LNKTYPE, "train/cat.0.jpg"),
        special("train/fifo.jpg", tarfile.FIFOTYPE),
        special("train/dev.jpg", tarfile.CHRTYPE),
        special("../evil/", tarfile.DIRTYPE),
    ]
    src = make_tar(root / "train.tar.gz", members, extra)
    out = root / "data"
    prep(src, out)
    for name in TRAVERSALS:
        assert "'..' component" in reason_for(out, name)
    assert "absolute path" in reason_for(out, str(evil_abs))
    assert "symbolic link to '/etc/passwd'" in reason_for(out, "train/link.jpg")
    assert "symbolic link" in reason_for(out, "train/up.jpg")
    assert "hard link" in reason_for(out, "train/hard.jpg")
    assert "FIFO" in reason_for(out, "train/fifo.jpg")
    assert "device" in reason_for(out, "train/dev.jpg")
    assert "'..' component" in reason_for(out, "../evil")  # tarfile drops the /
    assert all(r.startswith("refused") for p, r in rejects(out).items() if "evil" in p)
    assert len(manifest(out)) == 6  # the rest goes on
    assert not [p for p in out.rglob("*") if p.is_symlink()]
    check_no_evil(tmp_path)


def test_hostile_zip_members_are_refused(tmp_path, evil_abs):
    root = tmp_path / "in"
    root.mkdir()
    members = kaggle_members(per_label=3)
    for name in [*TRAVERSALS, str(evil_abs), "C:/evil.jpg"]:
        members[name] = image_bytes()
    src = make_zip(root / "train.zip", members)
    with zipfile.ZipFile(src, "a") as zf:
        link = zipfile.ZipInfo("train/link.jpg")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
        fifo = zipfile.ZipInfo("train/fifo.jpg")
        fifo.create_system = 3
        fifo.external_attr = (stat.S_IFIFO | 0o644) << 16
        zf.writestr(fifo, b"")
    out = root / "data"
    prep(src, out)
    for name in TRAVERSALS:
        assert "'..' component" in reason_for(out, name)
    assert "absolute path" in reason_for(out, str(evil_abs))
    assert "absolute path" in reason_for(out, "C:/evil.jpg")
    assert "symbolic link" in reason_for(out, "train/link.jpg")
    assert "FIFO" in reason_for(out, "train/fifo.jpg")
    assert len(manifest(out)) == 6
    assert not [p for p in out.rglob("*") if p.is_symlink()]
    check_no_evil(tmp_path)


def test_zip_bomb_member_is_refused(tmp_path, monkeypatch):
    # 3 MB of zeros deflate to about 3 KB: ~1000:1, over the 200:1 bound past 1 MB.
    members = kaggle_members(per_label=3)
    members["train/bomb.bmp"] = bytes(3 * 2**20)
    src = make_zip(tmp_path / "train.zip", members)
    out = tmp_path / "data"
    prep(src, out)
    assert "zip bomb" in reason_for(out, "train/bomb.bmp")
    assert not list(out.rglob("bomb.bmp"))
    assert len(manifest(out)) == 6


def test_tar_gz_bomb_member_is_refused(tmp_path, monkeypatch):
    # A tar member's compressed size is measured with 64 KB of slack for read-ahead,
    # so a small test bomb needs a lower ratio bound to be caught.
    monkeypatch.setattr(extract, "MAX_RATIO", 20)
    members = kaggle_members(per_label=3, folder="")
    members["bomb.bmp"] = bytes(3 * 2**20)
    src = make_tar(tmp_path / "train.tar.gz", members)
    out = tmp_path / "data"
    prep(src, out)
    assert "zip bomb" in reason_for(out, "bomb.bmp")
    assert len(manifest(out)) == 6


def test_member_over_the_size_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(extract, "MAX_MEMBER_BYTES", 100_000)
    members = kaggle_members(per_label=3)
    members["train/cat.50.bmp"] = secrets.token_bytes(200_000)
    src = make_zip(tmp_path / "train.zip", members, compression=zipfile.ZIP_STORED)
    out = tmp_path / "data"
    prep(src, out)
    assert "over the limit" in reason_for(out, "train/cat.50.bmp")
    assert len(manifest(out)) == 6


def test_bytes_are_counted_not_taken_from_the_header(tmp_path, monkeypatch):
    monkeypatch.setattr(extract, "MAX_MEMBER_BYTES", 100_000)
    dest = tmp_path / "dest"
    dest.mkdir()
    liar = _Member("big.png", "file", 10, None, lambda: io.BytesIO(bytes(300_000)))
    extractor = _Extractor(tmp_path / "x.zip", dest)
    extractor.take(liar)
    assert not extractor.written and not list(dest.iterdir())
    assert "its header said less" in extractor.rejects[0].reason


@pytest.mark.parametrize("name", ["many.zip", "many.tar.gz"])
def test_too_many_members_refuses_the_archive(tmp_path, monkeypatch, name):
    monkeypatch.setattr(extract, "MAX_MEMBERS", 5)
    members = kaggle_members(per_label=3)
    src = (make_zip if name.endswith(".zip") else make_tar)(tmp_path / name, members)
    out = tmp_path / "data"
    result = prep(src, out, exit_code=1)
    assert str(src) in result.output and "more than 5 members" in result.output
    assert not out.exists()


@pytest.mark.parametrize("name", ["train.tar", "train.zip", "other.tar.gz"])
def test_too_many_bytes_in_all_refuses_the_archive(tmp_path, monkeypatch, name):
    monkeypatch.setattr(extract, "MAX_TOTAL_BYTES", 50_000)
    members = kaggle_members(per_label=3)
    if name.startswith("other"):
        # Skipping a member of a compressed tar costs its decompression: it counts too.
        members["train/video.mp4"] = bytes(100_000)
    else:
        members.update(kaggle_members(per_label=40, folder="more/"))
    src = (make_zip if name.endswith(".zip") else make_tar)(tmp_path / name, members)
    out = tmp_path / "data"
    result = prep(src, out, exit_code=1)
    assert str(src) in result.output and "the limit per archive" in result.output
    assert not out.exists()


# --- broken archives ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["train.zip", "train.tar.gz", "train.tar", "train.tar.xz"])
def test_corrupt_or_cut_archive_is_a_clear_error(tmp_path, name):
    members = kaggle_members(per_label=6)
    (tmp_path / "full").mkdir()
    full = (make_zip if name.endswith(".zip") else make_tar)(tmp_path / "full" / name, members)
    cut = tmp_path / name
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    out = tmp_path / "data"
    result = prep(cut, out, exit_code=1)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and str(cut) in lines[0] and "corrupt or cut off" in lines[0]
    assert not out.exists()


def test_garbage_named_zip_is_a_clear_error(tmp_path):
    src = tmp_path / "train.zip"
    src.write_bytes(b"this is not a zip file at all" * 10)
    result = prep(src, tmp_path / "data", exit_code=1)
    assert str(src) in result.output and "not a readable zip archive" in result.output


def test_a_damaged_zip_member_is_rejected_and_the_rest_goes_on(tmp_path):
    members = kaggle_members(per_label=3)
    members["train/dog.77.jpg"] = image_bytes(seed=77)
    src = make_zip(tmp_path / "train.zip", members, compression=zipfile.ZIP_STORED)
    data = bytearray(src.read_bytes())
    # Flip a byte inside the stored member's data, so its CRC no longer matches.
    with zipfile.ZipFile(src) as zf:
        info = zf.getinfo("train/dog.77.jpg")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start + 200] ^= 0xFF
    src.write_bytes(bytes(data))
    out = tmp_path / "data"
    prep(src, out)
    assert "corrupt data" in reason_for(out, "train/dog.77.jpg")
    assert len(manifest(out)) == 6


# --- small pieces ------------------------------------------------------------------------


def test_unsafe_path_reason():
    assert unsafe_path_reason("train/cat.1.jpg") is None
    assert unsafe_path_reason("./train/cat.1.jpg") is None
    assert "absolute" in unsafe_path_reason("/etc/x.jpg")
    assert "absolute" in unsafe_path_reason("C:\\x.jpg")
    assert "'..'" in unsafe_path_reason("a/../../x.jpg")
    assert "'..'" in unsafe_path_reason("..\\x.jpg")
    assert unsafe_path_reason("..jpg") is None  # a name, not a parent folder


def test_archive_stem():
    assert archive_stem("train.tar.gz") == "train"
    assert archive_stem("Train Set.ZIP") == "Train_Set"
    assert archive_stem("..zip") == "archive"
    assert archive_stem("../x/.hidden.tgz") == "hidden"
