"""A folder of IDX files (the MNIST format): arrays written out as PNG images.

Images and labels are paired by their file-name prefix (``train-images-idx3-ubyte.gz``
with ``train-labels-idx1-ubyte.gz``); a ``t10k`` or ``test`` prefix is the official
test set and stays the test split. Class names are the label numbers ("0".."9").
"""

from __future__ import annotations

import gzip
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from imgkit.data.records import Record
from imgkit.data.sources.base import SourceContext, SourceResult, stratified_subset
from imgkit.errors import BadInputError

NAME = "idx"
DESCRIPTION = "a folder of IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, ...)"

_IMAGES = re.compile(r"^(?P<prefix>.+?)[-_.]images?[-_.]idx3[-_.]ubyte(?:\.gz)?$", re.IGNORECASE)
_LABELS = re.compile(r"^(?P<prefix>.+?)[-_.]labels?[-_.]idx1[-_.]ubyte(?:\.gz)?$", re.IGNORECASE)
_TEST_PREFIXES = {"t10k", "test"}
_UBYTE = 0x08


@dataclass
class IdxPart:
    """One images+labels pair: ``name`` is its folder below images/."""

    name: str
    images: np.ndarray  # (n, h, w) or (n, h, w, c) uint8
    labels: np.ndarray  # (n,) integers
    split: str | None  # fixed split ("test"), or None to be assigned


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (gzip-compressed or not) of unsigned bytes.

    Raises:
        BadInputError: not an IDX file of unsigned bytes, or cut short.
    """
    path = Path(path)
    try:
        opener = gzip.open if path.suffix.lower() == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise BadInputError(f"{path}: cannot read the IDX file ({e})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise BadInputError(f"{path}: not an IDX file (bad magic number)")
    if data[2] != _UBYTE:
        raise BadInputError(
            f"{path}: IDX data type 0x{data[2]:02x} is not supported (only unsigned bytes)"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim < 1 or len(data) < header:
        raise BadInputError(f"{path}: IDX header is cut short")
    shape = tuple(int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    expected = int(np.prod(shape))
    if len(data) - header < expected:
        raise BadInputError(
            f"{path}: IDX file is cut short ({len(data) - header} of {expected} bytes)"
        )
    return np.frombuffer(data, dtype=np.uint8, count=expected, offset=header).reshape(shape)


def find_pairs(folder: str | os.PathLike) -> dict[str, tuple[Path, Path]]:
    """Images and labels files in ``folder``, paired by prefix: {prefix: (images, labels)}."""
    images, labels = {}, {}
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if not entry.is_file():
            continue
        if m := _IMAGES.match(entry.name):
            images.setdefault(m["prefix"], Path(entry.path))
        elif m := _LABELS.match(entry.name):
            labels.setdefault(m["prefix"], Path(entry.path))
    return {p: (images[p], labels[p]) for p in sorted(images) if p in labels}


def matches(spec: str) -> bool:
    return Path(spec).is_dir() and bool(find_pairs(spec))


def load_parts(pairs: dict[str, tuple[Path, Path]]) -> list[IdxPart]:
    """Read every pair; the test prefixes become the fixed test split."""
    parts = []
    for prefix, (images_file, labels_file) in pairs.items():
        x, y = read_idx(images_file), read_idx(labels_file)
        if x.ndim not in (3, 4) or y.ndim != 1 or len(x) != len(y):
            raise BadInputError(
                f"{images_file}: {x.shape} images do not match {labels_file}: {y.shape} labels"
            )
        is_test = prefix.lower() in _TEST_PREFIXES
        parts.append(IdxPart("test" if is_test else prefix, x, y, "test" if is_test else None))
    return parts


def _save_png(job: tuple[np.ndarray, Path]) -> int:
    pixels, path = job
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(path, format="PNG")
    return 1


def write_parts(
    parts: list[IdxPart],
    class_names: list[str],
    ctx: SourceContext,
    description: str,
) -> SourceResult:
    """Write each part's images as PNGs under ``images/<part>/<label>/<index>.png``.

    ``--limit`` is applied per part here, before writing, so a small subset of a big
    array costs only its own files. The file name is the image's index in its IDX
    file, so the same image keeps the same name in every subset.
    """
    root = ctx.image_dir("images")
    rel_root = root.relative_to(ctx.workdir).as_posix()
    records: list[Record] = []
    arrays: dict[str, np.ndarray] = {}
    jobs: list[tuple[np.ndarray, Path]] = []
    for part in parts:
        labels = part.labels.astype(np.int64)
        if labels.min(initial=0) < 0 or labels.max(initial=0) >= len(class_names):
            raise BadInputError(f"{part.name}: labels outside 0..{len(class_names) - 1}")
        keep = stratified_subset(labels.tolist(), ctx.limit, ctx.seed)
        for k in sorted(set(labels[keep].tolist())):
            (root / part.name / str(k)).mkdir(parents=True, exist_ok=True)
        for i in keep:
            k = int(labels[i])
            rel = f"{rel_root}/{part.name}/{k}/{i}.png"
            pixels = part.images[i]
            pixels = pixels[..., None] if pixels.ndim == 2 else pixels
            records.append(Record(rel, label=class_names[k], split=part.split))
            arrays[rel] = pixels
            jobs.append((pixels, ctx.workdir / rel))
    # PNG encoding of small images is mostly file-system work, which overlaps well
    # in threads.
    with ThreadPoolExecutor(max(4, 2 * (os.cpu_count() or 2))) as pool:
        pending = 0
        for n in pool.map(_save_png, jobs):
            pending += n
            if pending == 1000:
                ctx.report("writing images", pending, len(jobs))
                pending = 0
        if pending:
            ctx.report("writing images", pending, len(jobs))
    return SourceResult(records, trusted=True, arrays=arrays, description=description)


def read(spec: str, ctx: SourceContext) -> SourceResult:
    """Read a folder of IDX files; labels become the class names "0", "1", ..."""
    parts = load_parts(find_pairs(spec))
    top = max(int(p.labels.max(initial=0)) for p in parts)
    names = [str(k) for k in range(top + 1)]
    return write_parts(parts, names, ctx, f"IDX files in {Path(spec).resolve()}")
