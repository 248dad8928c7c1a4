"""Property-based fuzzing (hypothesis) of everything imgkit reads from the user.

Each property feeds generated or damaged input to the library or to a command and
accepts exactly two outcomes: a correct result, or a clear error (an ImgkitError
subclass in the library; exit 1 with one ``Error:`` line and no traceback from a
command). An uncaught exception, a multi-line error, a hang, or a file written outside
the output folder fails the property.

The inputs: random and mutated image files (PNG, JPEG, GIF, TIFF, WebP, BMP), random
CSV text as a label file, a predictions file and a sample submission, random JSON and
text as imgkit.json and dataset.json, and zip/tar archives with hostile member names.

Each test runs a few dozen examples, so the file stays quick; every property also has
a ``slow``-marked copy with many more examples for a deeper run::

    python3 -m pytest -q tests/test_fuzz.py -m slow -p no:cacheprovider

A hang is an example still running after ``EXAMPLE_SECONDS``; one stuck in C code is
ended with the whole process after four times that, every thread's stack written to
``imgkit-fuzz-hang.log`` in the temporary folder.

Nothing here imports TensorFlow: prep, eval, submit and reading a bundle's
imgkit.json do not need it (the bundle's model is never loaded).
"""

from __future__ import annotations

import contextlib
import csv
import faulthandler
import io
import json
import math
import os
import signal
import tarfile
import tempfile
import time
import traceback
import warnings
import zipfile
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from imgkit.bundle import BUNDLE_META, MODEL_FILE, Bundle, load_bundle, read_meta
from imgkit.commands import cli
from imgkit.data.dataset import INFO, MANIFEST, Dataset
from imgkit.data.images import IMAGE_EXTENSIONS, check_image, load_array, open_image, to_array
from imgkit.data.sources import extract
from imgkit.errors import BadBundleError, BadDatasetError, BadImageError

# Pillow warns about much of what damaged files hold ("Corrupt EXIF data"); expected here.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL")

# --- running examples: time boxes, outcomes, folder snapshots ---------------------------

# One example may take this long (a slow, shared machine included) before it counts as
# a hang; past HARD_KILL_FACTOR times that, faulthandler ends the process with every
# thread's stack, for a hang inside C code that no signal can interrupt.
EXAMPLE_SECONDS = 20
HARD_KILL_FACTOR = 4
# Where those stacks go: pytest captures stderr, and a process ended that way never
# gets it back.
HANG_LOG = Path(tempfile.gettempdir()) / "imgkit-fuzz-hang.log"
_hang_log = []
# The slow-marked copies run this many times the default examples.
DEEP_FACTOR = 20

_COMMON = {
    "deadline": None,  # the time box below is the deadline; hypothesis's would be noisy
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
}


def fuzz_tests(count: int, *, found=(), **strategies):
    """Make a property into two tests: ``count`` generated examples, and a slow-marked copy
    with ``DEEP_FACTOR`` times as many. ``found`` holds inputs (keyword dicts) that once
    broke the library; both tests run them first, every time."""

    def make(prop):
        tests = []
        for n in (count, count * DEEP_FACTOR):
            test = given(**strategies)(prop)
            for kwargs in found:
                test = example(**kwargs)(test)
            tests.append(settings(max_examples=n, **_COMMON)(test))
        return tests[0], pytest.mark.slow(tests[1])

    return make


class Hang(Exception):
    """An example ran past its time box."""


@contextlib.contextmanager
def time_box(seconds: float = EXAMPLE_SECONDS):
    """Fail an example that runs longer than ``seconds``.

    SIGALRM interrupts the main thread; the elapsed time is checked as well, since
    library code may swallow the exception or sit in C code until it is done.
    """

    def on_alarm(signum, frame):
        raise Hang(f"an example ran for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    if not _hang_log:
        _hang_log.append(open(HANG_LOG, "w"))  # noqa: SIM115 (kept open while the tests run)
    faulthandler.dump_traceback_later(seconds * HARD_KILL_FACTOR, exit=True, file=_hang_log[0])
    start = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        faulthandler.cancel_dump_traceback_later()
    elapsed = time.monotonic() - start
    assert elapsed < seconds, f"an example took {elapsed:.1f} s (limit {seconds} s)"


def invoke(*args: str, stdin: bytes | None = None):
    """Run ``imgkit ARGS`` through click's CliRunner, stdout and stderr kept apart."""
    return CliRunner().invoke(cli, [str(a) for a in args], input=stdin)


def assert_clean_exit(result, what: str) -> None:
    """Exit 0, or exit 1 with exactly one ``Error:`` line last on stderr; no traceback."""
    error = result.exception
    if error is not None and not isinstance(error, SystemExit):
        trace = "".join(traceback.format_exception(*result.exc_info))
        pytest.fail(f"{what}: uncaught {type(error).__name__}: {error}\n{trace}")
    assert "Traceback" not in result.output, f"{what}: a traceback\n{result.output}"
    assert result.exit_code in (0, 1), f"{what}: exit {result.exit_code}\n{result.output}"
    event(f"{what}: exit {result.exit_code}")
    if result.exit_code == 1:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("Error: ")]
        assert len(errors) == 1 and lines[-1] == errors[0], (
            f"{what}: exit 1 without one last 'Error:' line on stderr:\n{result.stderr}"
        )


def snapshot(root: Path, skip: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under ``root`` but ``skip`` (the output), with mode, size and mtime."""
    seen = {}
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = [d for d in dirs if here / d != skip]
        for name in dirs + files:
            path = here / name
            if path == skip:
                continue
            st_ = path.lstat()
            seen[path.relative_to(root).as_posix()] = (st_.st_mode, st_.st_size, st_.st_mtime_ns)
    return seen


def assert_nothing_written_outside(before: dict, root: Path, out: Path, what: str) -> None:
    after = snapshot(root, out)
    added = sorted(set(after) - set(before))
    changed = sorted(k for k in set(after) & set(before) if after[k] != before[k])
    removed = sorted(set(before) - set(after))
    assert not (added or changed or removed), (
        f"{what}: written outside {out}: added {added[:5]}, changed {changed[:5]}, "
        f"removed {removed[:5]}"
    )


def assert_one_line(error: Exception) -> None:
    message = str(error)
    assert len(message.strip().splitlines()) == 1, f"not one line: {message!r}"


@st.composite
def mostly(draw, usual, unusual, odds: int = 4):
    """``usual`` but one time in ``odds``: a command must get past its first checks to
    be tested any deeper. Shrinks towards ``usual``."""
    return draw(unusual if draw(st.integers(0, odds - 1)) == odds - 1 else usual)


def manifest(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / MANIFEST, dtype=str, keep_default_na=False)


# --- image files ----------------------------------------------------------------------


def _ramp() -> Image.Image:
    ramp = np.add.outer(np.arange(7) * 9, np.arange(9) * 13) % 256
    rgb = np.stack([ramp, ramp[::-1], 255 - ramp], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb)


def _seed_images() -> list[tuple[str, bytes]]:
    """Small valid files of every accepted format, in several modes: what mutations start from."""
    rgb = _ramp()
    gray16 = Image.fromarray(np.asarray(rgb.convert("L")).astype(np.uint16) * 257)
    rotated = Image.Exif()
    rotated[0x0112] = 6  # EXIF orientation: turned 90 degrees
    variants = [
        (".png", rgb, "PNG", {}),
        (".png", rgb.convert("RGBA"), "PNG", {}),
        (".png", rgb.convert("P"), "PNG", {"transparency": 0}),
        (".png", gray16, "PNG", {}),
        (".jpg", rgb, "JPEG", {"quality": 80}),
        (".jpeg", rgb, "JPEG", {"progressive": True, "exif": rotated}),
        (".jpg", rgb.convert("CMYK"), "JPEG", {}),
        (".gif", rgb.convert("P"), "GIF", {}),
        (".gif", rgb.convert("P"), "GIF", {"save_all": True, "append_images": [rgb.convert("P")]}),
        (".tif", rgb, "TIFF", {}),
        (".tiff", rgb, "TIFF", {"compression": "tiff_deflate"}),
        (".tif", rgb.convert("CMYK"), "TIFF", {"exif": rotated}),
        (".webp", rgb, "WEBP", {"lossless": True}),
        (".webp", rgb.convert("RGBA"), "WEBP", {"quality": 50}),
        (".bmp", rgb, "BMP", {}),
        (".bmp", rgb.convert("L"), "BMP", {}),
    ]
    seeds = []
    for ext, img, fmt, options in variants:
        buf = io.BytesIO()
        img.save(buf, format=fmt, **options)
        seeds.append((ext, buf.getvalue()))
    return seeds


SEEDS = _seed_images()
MAGIC = [
    b"\x89PNG\r\n\x1a\n",
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
    b"\xff\xd8\xff\xe0",
    b"\xff\xd8\xff\xe1\x00\x40Exif\x00\x00",
    b"GIF89a",
    b"GIF87a\xff\xff\xff\xff",
    b"II*\x00\x08\x00\x00\x00",
    b"MM\x00*\x00\x00\x00\x08",
    b"RIFF\x00\x01\x00\x00WEBPVP8 ",
    b"RIFF\x00\x01\x00\x00WEBPVP8X",
    b"BM",
    b"BM\x00\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00\x28\x00\x00\x00",
]
# Values that land in width/height/length/offset fields when written over a header.
LOUD_BYTES = [b"\xff\xff", b"\x00\x00", b"\x7f\xff\xff\xff", b"\xff\xff\xff\xff", b"\x00"]

extensions = st.sampled_from(IMAGE_EXTENSIONS + (".JPG", ".Png"))


@st.composite
def mutated(draw, data: bytes) -> bytes:
    """``data`` with a few bits flipped, bytes inserted, deleted or overwritten, or cut off."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        if not out:
            break
        # Mostly past the first bytes, so the format is still recognised and its
        # decoder, not only the sniffing, meets the damage.
        last = len(out) - 1
        i = draw(mostly(st.integers(min(16, last), last), st.integers(0, last)))
        how = draw(st.sampled_from(["flip", "cut", "insert", "delete", "overwrite"]))
        if how == "flip":
            out[i] ^= 1 << draw(st.integers(0, 7))
        elif how == "cut":
            del out[i:]
        elif how == "insert":
            out[i:i] = draw(st.binary(min_size=1, max_size=32))
        elif how == "delete":
            del out[i : i + draw(st.integers(1, 32))]
        else:
            loud = draw(st.sampled_from(LOUD_BYTES) | st.binary(min_size=1, max_size=4))
            out[i : i + len(loud)] = loud
    return bytes(out)


@st.composite
def image_files(draw) -> tuple[str, bytes]:
    """(extension, content): a valid image, a damaged one, or bytes that are none."""
    kind = draw(st.sampled_from(["valid", "mutated", "mutated", "mutated", "magic", "random"]))
    if kind == "random":
        return draw(extensions), draw(st.binary(max_size=600))
    if kind == "magic":
        return draw(extensions), draw(st.sampled_from(MAGIC)) + draw(st.binary(max_size=300))
    ext, data = draw(st.sampled_from(SEEDS))
    if draw(st.integers(0, 9)) == 0:
        ext = draw(extensions)  # the content, not the name, says what a file is
    return ext, data if kind == "valid" else draw(mutated(data))


def _open_image_property(sample):
    """open_image/check_image/load_array: a usable image or BadImageError, never another error."""
    ext, data = sample
    with tempfile.TemporaryDirectory() as tmp, time_box():
        path = Path(tmp) / f"image{ext}"
        path.write_bytes(data)
        try:
            img = open_image(path)
        except BadImageError as e:
            assert e.path == str(path) and e.reason
            assert_one_line(e)
            event(f"open_image: {e.reason.split(' (')[0][:40]}")
            opened = None
        else:
            assert img.mode in ("L", "RGB") and img.width >= 1 and img.height >= 1
            assert to_array(img, (5, 4), 3).shape == (5, 4, 3)
            event(f"open_image: a {img.mode} image")
            opened = img.size
        try:
            checked = check_image(path)
        except BadImageError as e:
            assert_one_line(e)
            checked = None
        assert checked == opened, "check_image and open_image disagree"
        try:
            # A drafted decode (JPEG at reduced scale) takes another path through Pillow.
            array = load_array(path, (3, 4), channels=1, resize="crop")
        except BadImageError as e:
            assert_one_line(e)
        else:
            assert array.shape == (3, 4, 1) and array.dtype == np.uint8


test_open_image, test_open_image_deep = fuzz_tests(60, sample=image_files())(_open_image_property)


def _prep_folder_property(files):
    """prep on class folders of damaged images: exit 0 with the bad ones in rejects.csv,
    or exit 1 (one line) when no image is usable."""
    with tempfile.TemporaryDirectory() as tmp, time_box():
        root = Path(tmp)
        src, out = root / "photos", root / "out"
        usable = {}
        for n, (label, (ext, data)) in enumerate(files):
            path = src / label / f"{n}{ext}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            try:
                check_image(path)
                usable[path.resolve().as_posix()] = True
            except BadImageError:
                usable[path.resolve().as_posix()] = False
        before = snapshot(root, out)
        result = invoke("prep", src, "-o", out)
        assert_clean_exit(result, "prep FOLDER")
        assert_nothing_written_outside(before, root, out, "prep FOLDER")
        if result.exit_code == 1:
            assert not any(usable.values()), "prep failed although some images are usable"
            assert not out.exists()
            return
        taken = {(out / p).resolve().as_posix() for p in manifest(out)["path"]}
        rejected = set(pd.read_csv(out / "rejects.csv", dtype=str, keep_default_na=False)["path"])
        assert taken == {p for p, ok in usable.items() if ok}
        assert {p for p, ok in usable.items() if not ok} <= rejected


test_prep_damaged_images, test_prep_damaged_images_deep = fuzz_tests(
    25,
    files=st.lists(st.tuples(st.sampled_from(["cats", "dogs"]), image_files()), max_size=5),
)(_prep_folder_property)


# --- CSV text ---------------------------------------------------------------------------


any_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
# Characters that mean something to a CSV parser, to make its corner cases likely.
csv_text = st.text(
    st.sampled_from(list(",;\"'\t\r\n \\#=-+.0123456789eEnaNINFpath_label\ufeff\u00e9")),
    max_size=200,
)
numbers = mostly(
    st.floats(0, 1).map(lambda v: f"{v:.6g}"),
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.sampled_from(["", " ", "nan", "inf", "-inf", "1e309", "-0", "0.5 ", "1", "2", "1,5"]),
        any_text,
    ),
)


@st.composite
def headers(draw, required, optional: list[str]) -> list[str]:
    """Mostly the required columns (a list, or a strategy for one), half the time with
    some optional ones, in any order; sometimes anything."""
    if isinstance(required, st.SearchStrategy):
        required = draw(required)
    names = required + optional
    if draw(st.integers(0, 4)) == 4:
        return draw(st.lists(st.sampled_from(names) | any_text, min_size=1, max_size=6))
    extra = []
    if optional and draw(st.booleans()):
        extra = draw(st.lists(st.sampled_from(optional), unique=True))
    columns = draw(st.permutations(required + extra))
    if columns and draw(st.integers(0, 5)) == 5:
        i = draw(st.integers(0, len(columns) - 1))
        columns[i] = draw(st.sampled_from([columns[i].upper(), f" {columns[i]}", ""]) | any_text)
    return columns


@st.composite
def csv_files(draw, required, optional, cell_for, rows=st.integers(0, 6)) -> bytes:
    """Mostly a CSV with a header and rows (cells from ``cell_for(column, row)``), written
    properly or carelessly, in one of several encodings; else random text or bytes."""
    kind = draw(mostly(st.just("table"), st.sampled_from(["text", "bytes"])))
    if kind == "text":
        return draw(st.one_of(csv_text, any_text)).encode("utf-8")
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    columns = draw(headers(required, optional))
    n = draw(rows) if isinstance(rows, st.SearchStrategy) else rows
    table = [[draw(cell_for(c, i)) for c in columns] for i in range(n)]
    style = draw(mostly(st.just("csv"), st.sampled_from(["naive", "no-header"])))
    if style == "naive":  # no quoting: a comma or newline in a cell breaks the row
        lines = [",".join(columns)] + [",".join(r) for r in table]
        text = draw(st.sampled_from(["\n", "\r\n", "\r"])).join(lines)
    else:
        buf = io.StringIO()
        writer = csv.writer(buf)
        if style == "csv":
            writer.writerow(columns)
        writer.writerows(table)
        text = buf.getvalue()
    encoding = draw(mostly(st.just("utf-8"), st.sampled_from(["utf-8-sig", "utf-16", "latin-1"])))
    return text.encode(encoding, errors="replace")


# The label CSV's images: a few good ones, a broken one, and names that are not images.
GOOD_LABEL_PATHS = ["img0.png", "sub/img1.jpg", "./img0.png", "../outside.png", "sub/../img0.png"]
ODD_LABEL_PATHS = ["broken.jpg", "missing.png", "sub", "labels.csv", " img0.png ", "img0.PNG"]
ODD_LABEL_PATHS += ["sub\\img1.jpg", "", "/", "\\", "img0.png\r", "~/img0.png", "a\x00/b.png"]


def label_cell(column: str, row: int):
    if column == "path":
        odd = st.sampled_from(ODD_LABEL_PATHS) | any_text
        return mostly(st.sampled_from(GOOD_LABEL_PATHS), odd)
    if column == "label":
        odd = st.sampled_from(["", " ", "Cat", "a,b", 'q"', "nan", "None"]) | any_text
        return mostly(st.sampled_from(["cat", "dog"]), odd)
    if column == "split":
        usual = st.sampled_from(["train", "val", "test", "unlabeled", ""])
        return mostly(usual, st.sampled_from(["valid", "dev", "Training", "x"]) | any_text)
    if column == "group":
        return mostly(st.sampled_from(["p1", "p2", ""]), any_text)
    return any_text


def _prep_csv_property(table, options):
    """prep labels.csv: exit 0, or exit 1 with one line; nothing written outside OUT."""
    with tempfile.TemporaryDirectory() as tmp, time_box():
        root = Path(tmp)
        src, out = root / "src", root / "out"
        (src / "sub").mkdir(parents=True)
        rgb = _ramp()
        rgb.save(src / "img0.png")
        rgb.save(src / "sub" / "img1.jpg")
        rgb.save(root / "outside.png")
        (src / "broken.jpg").write_bytes(SEEDS[4][1][:60])
        labels = src / "labels.csv"
        labels.write_bytes(table)
        before = snapshot(root, out)
        result = invoke("prep", labels, "-o", out, *options)
        assert_clean_exit(result, "prep labels.csv")
        assert_nothing_written_outside(before, root, out, "prep labels.csv")
        if result.exit_code == 0:
            rows = manifest(out)
            assert set(rows["split"]) <= {"train", "val", "test", "unlabeled"}
            assert all((out / p).resolve().is_file() for p in rows["path"])
        else:
            assert not out.exists()


prep_options = st.lists(
    st.sampled_from(
        [["--max-bad", "0"], ["--max-bad", "0.5"], ["--group-by", "(p[0-9])"], ["--limit", "1"]]
    ),
    max_size=2,
    unique_by=lambda o: o[0],
).map(lambda opts: [a for o in opts for a in o])

test_prep_csv, test_prep_csv_deep = fuzz_tests(
    40,
    found=[
        # pandas's message for a row too long ends in a line break; a vertical tab in a
        # header is one too.
        {"table": b"path,label\nimg0.png,cat\nimg0.png,cat,extra\n", "options": []},
        {"table": b"\x00\x0b\x00", "options": []},
        # A NUL in a path: os.path.realpath raised ValueError.
        {"table": b"label,path\r\ncat,\x00\r\n", "options": []},
    ],
    table=csv_files(["path", "label"], ["split", "group"], label_cell),
    options=prep_options,
)(_prep_csv_property)


CLASSES = ("cats", "dogs")


@pytest.fixture(scope="module")
def truth(tmp_path_factory) -> Path:
    """A small labelled dataset (cats and dogs, 3 each, all in the test split)."""
    root = tmp_path_factory.mktemp("truth")
    for label, colour in zip(CLASSES, ((200, 40, 40), (40, 200, 40)), strict=True):
        for n in range(3):
            path = root / "photos" / label / f"{n}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (6, 5), colour).save(path)
    result = invoke("prep", root / "photos", "-o", root / "data", "--val", "0", "--test", "0.99")
    assert result.exit_code == 0, result.output
    return root / "data"


# Stands for the truth's photos folder in generated CSV text (the test's temporary
# folders are not known when strategies are built).
PHOTOS = "<photos>"
TRUTH_IMAGES = [f"{PHOTOS}/{label}/{n}.png" for label in CLASSES for n in range(3)]
# The truth's images as a prediction may name them: absolute, or as its manifest does.
TRUTH_NAMES = TRUTH_IMAGES + [f"../photos/{label}/{n}.png" for label in CLASSES for n in range(3)]
ODD_PATHS = ["", "-", ".", "..", "/", "a\x00/b.png", "\x00", "C:\\x.png", "cats/0.png"]


def with_photos(text: bytes, truth: Path) -> bytes:
    return text.replace(PHOTOS.encode(), str((truth.parent / "photos").resolve()).encode())


def prediction_cell(column: str, row: int):
    if column == "path":
        return mostly(st.sampled_from(TRUTH_NAMES), st.sampled_from(ODD_PATHS) | any_text)
    if column == "label":
        return mostly(st.sampled_from(CLASSES), st.sampled_from(["", "birds", " cats"]))
    if column.startswith("p_") or column == "confidence":
        return numbers
    return any_text


def truth_cell(column: str, row: int):
    if column == "path":
        return mostly(st.sampled_from(TRUTH_NAMES), st.sampled_from(ODD_PATHS) | any_text)
    if column == "label":
        return mostly(st.sampled_from(CLASSES), st.sampled_from(["", "birds"]) | any_text)
    return any_text


def _eval_property(truth, preds, truth_csv, to_folder, stdin):
    """eval PREDS --truth DATA|CSV: exit 0 with the metrics, or exit 1 with one line."""
    preds = with_photos(preds, truth)
    with tempfile.TemporaryDirectory() as tmp, time_box():
        root = Path(tmp)
        file, out = root / "preds.csv", root / "out"
        file.write_bytes(preds)
        args = ["eval", "-" if stdin else file, "--truth", truth]
        if truth_csv is not None:
            (root / "truth.csv").write_bytes(with_photos(truth_csv, truth))
            args[-1] = root / "truth.csv"
        if to_folder:
            args += ["-o", out]
        before = snapshot(root, out)
        result = invoke(*args, stdin=preds if stdin else None)
        assert_clean_exit(result, "eval")
        assert_nothing_written_outside(before, root, out, "eval")
        if result.exit_code == 0 and not to_folder:
            summary = json.loads(result.stdout)
            assert 0 <= summary["accuracy"] <= 1
        if result.exit_code == 0 and to_folder:
            assert (out / "metrics.json").is_file()
        if result.exit_code == 1:
            assert not (out / "metrics.json").exists()


test_eval_predictions, test_eval_predictions_deep = fuzz_tests(
    40,
    found=[
        # A NUL in a path: os.path.realpath raised ValueError while matching.
        {
            "preds": b'path,label\n"a\x00/b.png",cats\n',
            "truth_csv": truth_csv,
            "to_folder": False,
            "stdin": False,
        }
        for truth_csv in (None, b'path,label\n"a\x00/b.png",cats\n')
    ],
    preds=csv_files(
        st.sampled_from(
            [["path", "label"], ["path", "p_cats", "p_dogs"], ["path", "label", "p_dogs", "p_cats"]]
        ),
        ["confidence", "p_birds", "p_"],
        prediction_cell,
        rows=st.integers(0, 8),
    ),
    truth_csv=mostly(st.none(), csv_files(["path", "label"], ["split"], truth_cell)),
    to_folder=st.sampled_from([False, False, True]),
    stdin=st.booleans(),
)(_eval_property)


ODD_IDS = st.sampled_from(["3.0", " 2", "012", "abc", "", "-1", "1e3", "a.b"]) | any_text


@st.composite
def submit_inputs(draw) -> tuple[bytes, bytes | None]:
    """(predictions, sample or None): mostly one row per id and the sample's ids the same."""
    ids = draw(st.lists(mostly(st.integers(0, 99).map(str), ODD_IDS), max_size=6))
    folder = draw(st.sampled_from(["", "test/", "a\\b\\", "/abs/", "x.y/"]))
    ext = draw(st.sampled_from([".jpg", ".jpg", ".png", "", "."]))

    def pred_cell(column: str, row: int):
        if column == "path":
            return mostly(st.just(folder + ids[row] + ext), ODD_IDS)
        if column.startswith("p_") or column == "confidence":
            return numbers
        if column == "label":
            return st.sampled_from(CLASSES)
        return any_text

    optional = ["label", "confidence", "p_birds"]
    preds = draw(csv_files(["path", "p_cats", "p_dogs"], optional, pred_cell, len(ids)))
    if draw(st.integers(0, 2)) == 0:
        return preds, None
    others = st.lists(ODD_IDS | st.sampled_from(ids or [""]), max_size=6)
    sample_ids = draw(mostly(st.permutations(ids), others))

    def sample_cell(column: str, row: int):
        if column == "id":
            return mostly(st.just(sample_ids[row]), ODD_IDS)
        return numbers

    return preds, draw(csv_files(["id", "label"], [], sample_cell, len(sample_ids)))


def _submit_property(inputs, options, stdin):
    """submit PREDS [--sample S]: a checked submission file, or exit 1 with one line."""
    preds, sample = inputs
    with tempfile.TemporaryDirectory() as tmp, time_box():
        root = Path(tmp)
        file, out = root / "preds.csv", root / "out"
        file.write_bytes(preds)
        args = ["submit", "-" if stdin else file, "-o", out / "submission.csv", *options]
        if sample is not None:
            (root / "sample.csv").write_bytes(sample)
            args += ["--sample", root / "sample.csv"]
        before = snapshot(root, out)
        result = invoke(*args, stdin=preds if stdin else None)
        assert_clean_exit(result, "submit")
        assert_nothing_written_outside(before, root, out, "submit")
        written = out / "submission.csv"
        if result.exit_code == 1:
            assert not written.exists()
            return
        sub = pd.read_csv(written, dtype=str, keep_default_na=False)
        values = sub.iloc[:, 1].astype(float)
        assert values.between(0, 1).all()
        if sample is not None:
            given = pd.read_csv(root / "sample.csv", dtype=str, keep_default_na=False)
            assert list(sub.columns) == list(given.columns) and len(sub) == len(given)


submit_options = st.lists(
    st.sampled_from(
        [
            ["--clip", "0.005"],
            ["--clip", "0.25"],
            ["--column", "p_dogs"],
            ["--column", "cats"],
            ["--column", "nope"],
            ["--id-from", "name"],
            ["--id-from", "path"],
        ]
    ),
    max_size=2,
    unique_by=lambda o: o[0],
).map(lambda opts: [a for o in opts for a in o])

test_submit, test_submit_deep = fuzz_tests(
    50,
    found=[
        # An id holding a carriage return, written unquoted, split its row.
        {"inputs": (b'path,p_cats,p_dogs\n"\r.jpg",0,0\n', None), "options": [], "stdin": False},
        # No rows: an empty submission and numpy's "mean of empty slice".
        {"inputs": (b"path,p_cats,p_dogs\n", None), "options": [], "stdin": False},
    ],
    inputs=submit_inputs(),
    options=submit_options,
    stdin=st.booleans(),
)(_submit_property)


# --- JSON: imgkit.json and dataset.json -------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=8,
)

VALID_META = {
    "imgkit_version": "0.1.0",
    "format": 1,
    "task": "classification",
    "model": "fashion-cnn",
    "classes": ["cats", "dogs"],
    "input_size": [28, 28],
    "channels": 1,
    "resize": "stretch",
    "pixels": {"scale": 1 / 255, "offset": 0.0, "inside_model": True},
    "polarity": "dark",
    "output": "softmax",
    "temperature": 1.3,
    "threshold": 0.5,
    "metrics": {"test": {"accuracy": 0.9}},
    "dataset": {"path": "data", "hash": "abc"},
    "train_args": {"epochs": 3},
}


# Other values a key might hold, right or wrong, beside any JSON at all.
NEARBY = {
    "format": [0, 1, 2, True, "1"],
    "task": ["segmentation", "classification ", "", None],
    "classes": [[], ["a"], ["a", "b", "c"], ["a", 1], "ab", {"a": 1}],
    "input_size": [[1, 1], [224, 224], [0, 28], [28], [28, 28, 3], [28.0, 28], ["28", 28]],
    "channels": [1, 3, 2, 0, 1.0, "3"],
    "resize": ["pad", "crop", "fill", None],
    "polarity": ["light", None, "", 1],
    "output": ["sigmoid", "logits", None],
    "temperature": [0, 0.4, 20, -1, None, "1.5", 1e308],
    "threshold": [0, 1, 0.3, None, -0.5, 2, "0.5"],
    "metrics": [{}, None, [], {"val": None}],
    "dataset": [{}, None, [], "data"],
    "counts": [{}, {"test": {}}, {"train": {"x": "1"}}, []],
}


@st.composite
def json_documents(draw, valid: dict) -> bytes:
    """Mostly a damaged copy of ``valid`` (keys replaced or dropped); else any JSON, or
    text that is not JSON."""
    kind = draw(mostly(st.just("damaged"), st.sampled_from(["json", "text", "bytes"])))
    if kind == "text":
        return draw(st.one_of(any_text, csv_text)).encode("utf-8")
    if kind == "bytes":
        return draw(st.binary(max_size=100))
    if kind == "json":
        return json.dumps(draw(json_values)).encode("utf-8")
    doc = dict(valid)
    for key in draw(st.lists(st.sampled_from(sorted(valid)), max_size=3, unique=True)):
        if draw(st.integers(0, 3)) == 3:
            del doc[key]
        else:
            doc[key] = draw(mostly(st.sampled_from(NEARBY.get(key, [None])), json_values, odds=3))
    text = json.dumps(doc, ensure_ascii=draw(st.booleans()))
    if draw(st.integers(0, 9)) == 0:
        text = text[: draw(st.integers(0, len(text)))]  # cut off mid-write
    return text.encode("utf-8")


def _check_bundle(bundle: Bundle) -> None:
    """Everything a consumer reads from a loaded bundle, short of the model itself."""
    assert isinstance(bundle.task, str) and isinstance(bundle.output, str)
    assert all(isinstance(c, str) for c in bundle.classes)
    h, w = bundle.input_size
    assert h >= 1 and w >= 1
    assert bundle.channels in (1, 3)
    assert isinstance(bundle.resize, str)
    assert bundle.polarity is None or isinstance(bundle.polarity, str)
    assert isinstance(bundle.pixels, dict) and isinstance(bundle.metrics, dict)
    assert math.isfinite(bundle.temperature) and bundle.temperature > 0
    threshold = bundle.meta.get("threshold")
    assert threshold is None or math.isfinite(float(threshold))
    assert isinstance(bundle.meta.get("dataset") or {}, dict)
    repr(bundle)


def _bundle_meta_property(document, task):
    """read_meta / load_bundle: a bundle whose fields have the right types, or BadBundleError."""
    with tempfile.TemporaryDirectory() as tmp, time_box():
        folder = Path(tmp)
        (folder / BUNDLE_META).write_bytes(document)
        (folder / MODEL_FILE).write_bytes(b"never loaded here")
        try:
            meta = read_meta(folder)
        except BadBundleError as e:
            assert_one_line(e)
            meta = None
        else:
            assert isinstance(meta, dict)
        try:
            bundle = load_bundle(folder, task=task)
        except BadBundleError as e:
            assert_one_line(e)
            event("load_bundle: BadBundleError")
            return
        event("load_bundle: a bundle")
        assert meta is not None, "load_bundle took what read_meta refused"
        _check_bundle(bundle)


test_bundle_meta, test_bundle_meta_deep = fuzz_tests(
    60,
    found=[
        {"document": json.dumps({**VALID_META, key: value}).encode(), "task": None}
        for key, value in [
            ("channels", ""),
            ("input_size", None),
            ("classes", None),
            ("threshold", []),
            ("temperature", "x"),
            ("polarity", []),
            ("pixels", None),
        ]
    ],
    document=json_documents(VALID_META),
    task=st.sampled_from([None, "classification", "segmentation"]),
)(_bundle_meta_property)


VALID_INFO = {
    "task": "classification",
    "classes": list(CLASSES),
    "counts": {"test": {"cats": 3, "dogs": 3}},
    "images": 6,
    "rejected": 0,
    "source": ["photos"],
    "seed": 0,
    "created_by": "imgkit 0.1.0",
}


def manifest_cell(column: str, row: int):
    if column == "path":
        return mostly(st.sampled_from(TRUTH_IMAGES), any_text)
    if column == "label":
        return mostly(st.sampled_from(CLASSES), st.sampled_from(["", "birds"]) | any_text)
    if column == "split":
        return mostly(st.sampled_from(["test", "train"]), st.sampled_from(["", "x"]))
    return any_text


def _dataset_json_property(truth, document, manifest_text):
    """Dataset.load with a damaged dataset.json (and sometimes manifest.csv): a usable
    Dataset or BadDatasetError; and eval against it exits 0 or 1 with one line."""
    photos = str((truth.parent / "photos").resolve())
    with tempfile.TemporaryDirectory() as tmp, time_box():
        root = Path(tmp)
        folder = root / "data"
        folder.mkdir()
        (folder / INFO).write_bytes(document)
        rows = manifest(truth)
        rows["path"] = [str((truth / p).resolve()) for p in rows["path"]]
        if manifest_text is None:
            rows.to_csv(folder / MANIFEST, index=False)
        else:
            (folder / MANIFEST).write_bytes(manifest_text.replace(PHOTOS.encode(), photos.encode()))
        try:
            ds = Dataset.load(folder)
        except BadDatasetError as e:
            assert_one_line(e)
        else:
            assert isinstance(ds.task, str)
            assert all(isinstance(c, str) for c in ds.classes)
            for split in ds.splits():
                assert len(ds.paths(split)) > 0
        preds = root / "preds.csv"
        pd.DataFrame(
            {"path": rows["path"], "label": rows["label"], "p_cats": 0.6, "p_dogs": 0.4}
        ).to_csv(preds, index=False)
        result = invoke("eval", preds, "--truth", folder)
        assert_clean_exit(result, "eval --truth DATA")


test_dataset_json, test_dataset_json_deep = fuzz_tests(
    40,
    found=[
        {"document": b'{"task": null, "classes": ["cats", "dogs"]}', "manifest_text": None},
        {"document": b'{"classes": null}', "manifest_text": None},
        {"document": b"[]", "manifest_text": None},
        {
            "document": json.dumps(VALID_INFO).encode(),
            "manifest_text": f"path,label,split\n{TRUTH_IMAGES[0]},birds,test\n".encode(),
        },
    ],
    document=json_documents(VALID_INFO),
    manifest_text=mostly(
        st.none(),
        csv_files(["path", "label", "split"], ["group", "mask"], manifest_cell),
        odds=3,
    ),
)(_dataset_json_property)


# --- archives ---------------------------------------------------------------------------

# Stands for the test's temporary folder in a member name: an absolute path that would
# land somewhere the test can see.
HERE = "<here>"

name_parts = mostly(
    st.sampled_from(["cats", "dogs", "train", "cat.1", "dog.2", "1", "é", "名前"]),
    st.sampled_from(["..", ".", "", "__MACOSX", ".hidden", "._x", "C:", "~", "x" * 300])
    | st.text(
        st.characters(exclude_characters="\0/\\", exclude_categories=("Cs",)),
        min_size=1,
        max_size=12,
    ),
    odds=3,
)
ODD_PREFIXES = ["/", "./", "../", "../../../", HERE + "/", "C:\\", "C:", "\\\\s\\", "//"]


@st.composite
def member_names(draw) -> str:
    """A member name: mostly plain folders and an image file name; else anything from
    '..' and absolute paths to very long, unicode or control-character names."""
    parts = draw(st.lists(name_parts, min_size=1, max_size=4))
    name = ""
    for n, part in enumerate(parts):
        name += (draw(mostly(st.just("/"), st.just("\\"))) if n else "") + part
    prefix = draw(mostly(st.just(""), st.sampled_from(ODD_PREFIXES)))
    usual = st.sampled_from([".png", ".jpg", ".gif"])
    suffix = draw(mostly(usual, st.sampled_from([".PNG", ".txt", "", "/", ".zip", " "])))
    return prefix + name + suffix


@st.composite
def member_data(draw) -> bytes:
    kind = draw(mostly(st.just("image"), st.sampled_from(["mutated", "random", "zeros"])))
    if kind == "image":
        return draw(st.sampled_from(SEEDS))[1]
    if kind == "mutated":
        return draw(mutated(draw(st.sampled_from(SEEDS))[1]))
    if kind == "zeros":  # compresses far better than any image: the ratio limit's case
        return bytes(draw(st.integers(0, 200_000)))
    return draw(st.binary(max_size=2000))


members = st.lists(
    st.tuples(
        member_names(),
        mostly(st.just("file"), st.sampled_from(["dir", "symlink", "hardlink"])),
        member_data(),
        st.sampled_from(["../../x.png", "/etc/passwd", "cats/a.png", HERE + "/y.png"]),
    ),
    min_size=1,
    max_size=8,
)

# Smaller limits on some examples, so that random sizes can reach them.
limits = mostly(
    st.just({}),
    st.fixed_dictionaries(
        {},
        optional={
            "MAX_MEMBERS": st.integers(1, 8),
            "MAX_MEMBER_BYTES": st.integers(100, 100_000),
            "MAX_TOTAL_BYTES": st.integers(1_000, 300_000),
            "RATIO_MIN_BYTES": st.integers(1_000, 50_000),
            "MAX_RATIO": st.integers(2, 50),
        },
    ),
)

ARCHIVE_SUFFIXES = [".zip", ".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz"]


def write_zip(path: Path, entries) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are the point
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, kind, data, _ in entries:
                info = zipfile.ZipInfo(name)
                info.compress_type = zipfile.ZIP_DEFLATED
                if kind == "dir":
                    info.external_attr = (0o40755 << 16) | 0x10
                    data = b""
                elif kind in ("symlink", "hardlink"):
                    info.external_attr = 0o120777 << 16
                zf.writestr(info, data)


def write_tar(path: Path, entries) -> None:
    mode = {".gz": "w:gz", ".tgz": "w:gz", ".bz2": "w:bz2", ".xz": "w:xz"}.get(path.suffix, "w")
    with tarfile.open(path, mode, format=tarfile.PAX_FORMAT) as tf:
        for name, kind, data, target in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE}.get(
                kind, tarfile.LNKTYPE
            )
            info.linkname = target
            tf.addfile(info)


def _archive_property(entries, suffix, duplicates, cut, limit_values):
    """prep ARCHIVE: exit 0 or one-line exit 1, and never a file outside OUT."""
    with tempfile.TemporaryDirectory() as tmp, time_box():
        root = Path(tmp)
        here = root.as_posix()
        entries = [
            (name.replace(HERE, here), kind, data, target.replace(HERE, here))
            for name, kind, data, target in entries
        ]
        entries += [entries[i % len(entries)] for i in duplicates]
        archive, out = root / "src" / f"data{suffix}", root / "out"
        archive.parent.mkdir()
        (write_zip if suffix == ".zip" else write_tar)(archive, entries)
        if cut is not None:
            data = archive.read_bytes()
            archive.write_bytes(data[: int(len(data) * cut)])
        before = snapshot(root, out)
        with contextlib.ExitStack() as stack:
            for name, value in limit_values.items():
                stack.enter_context(mock.patch.object(extract, name, value))
            result = invoke("prep", archive, "-o", out)
        assert_clean_exit(result, f"prep {archive.name}")
        assert_nothing_written_outside(before, root, out, f"prep {archive.name}")
        if result.exit_code == 1:
            assert not out.exists()
            return
        real_out = out.resolve()
        for folder, dirs, files in os.walk(out):
            for name in dirs + files:
                path = Path(folder) / name
                assert not path.is_symlink(), f"a link was extracted: {path}"
        for p in manifest(out)["path"]:
            assert (out / p).resolve().is_relative_to(real_out), f"{p} is outside {out}"
            assert (out / p).is_file(), f"manifest.csv names {p!r}, which is not a file"
        rejects = pd.read_csv(out / "rejects.csv", dtype=str, keep_default_na=False)
        assert (rejects["reason"] != "").all(), "a rejects.csv row was split"


test_prep_archive, test_prep_archive_deep = fuzz_tests(
    40,
    found=[
        # A carriage return in a member's name once split its manifest.csv row.
        {
            "entries": [("\r.png", "file", SEEDS[0][1], "")],
            "suffix": ".zip",
            "duplicates": [],
            "cut": None,
            "limit_values": {},
        },
        # A member with an empty name: zipfile's ZipInfo.is_dir() raised IndexError.
        {
            "entries": [("", "file", SEEDS[0][1], "")],
            "suffix": ".zip",
            "duplicates": [],
            "cut": None,
            "limit_values": {},
        },
        # tarfile's message for an empty file runs over five lines.
        {
            "entries": [("a.png", "file", SEEDS[0][1], "")],
            "suffix": ".tar",
            "duplicates": [],
            "cut": 0.0,
            "limit_values": {},
        },
    ],
    entries=members,
    suffix=st.sampled_from(ARCHIVE_SUFFIXES),
    duplicates=st.lists(st.integers(0, 7), max_size=3),
    cut=mostly(st.none(), st.floats(0, 1)),
    limit_values=limits,
)(_archive_property)
