"""Image + mask pairs for ``imgkit prep --masks``: matching, checking, converting.

Masks are matched to images by file stem (``cell7.jpg`` <- ``cell7.png`` or
``cell7_mask.png``) in a masks folder, or listed in a CSV with ``path,mask`` columns
(paths relative to the CSV). Each mask is read once (:func:`imgkit.data.masks.read_mask`):
what cannot be used (unmatched, empty, another size than its image, not two-valued)
goes to rejects.csv; a mask that is not already a plain 0/255 grayscale file is
written as one under the dataset's ``images/masks/``, else the original is referenced.

With a class table (``--mask-classes``/``--mask-colors``, :mod:`imgkit.data.classmasks`)
masks are multi-class: a value outside the named classes or a colour not in the table
is a reject (unless declared ignored), and every mask is written as a palette PNG of
class values under ``images/masks/``, ignored pixels as 255.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pandas as pd

from imgkit.data.classmasks import MaskClasses, read_class_mask, write_class_png
from imgkit.data.images import check_image, list_images
from imgkit.data.masks import mask_image_size, read_mask, write_mask_png
from imgkit.data.records import Record, Reject
from imgkit.data.sources.base import absolute
from imgkit.errors import BadImageError, BadInputError

MASK_DIR = "images/masks"
# Suffixes a mask's stem may add to its image's stem.
MASK_SUFFIXES = ("", "_mask", "-mask", ".mask", "_seg", "_label")


def _mask_key(stem: str) -> str:
    for suffix in MASK_SUFFIXES[1:]:
        if stem.lower().endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def _index_folder(folder: Path) -> tuple[dict[str, list[Path]], list[Reject]]:
    paths, bad = list_images(folder)
    index: dict[str, list[Path]] = {}
    for p in paths:
        index.setdefault(_mask_key(Path(p).stem), []).append(Path(p))
    return index, [Reject(absolute(r.path), r.reason) for r in bad]


def _index_csv(path: Path) -> tuple[dict[str, Path], list[Reject]]:
    """{image: mask} from a path,mask CSV; rows no file could be named by are rejects."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (ValueError, OSError) as e:
        raise BadInputError(f"{path}: cannot read the masks CSV ({e})") from e
    table.columns = [str(c).strip().lower() for c in table.columns]
    if not {"path", "mask"} <= set(table.columns):
        raise BadInputError(f"{path}: a masks CSV needs path and mask columns")
    base = path.resolve().parent
    index: dict[str, Path] = {}
    rejects: list[Reject] = []
    rows = zip(table["path"], table["mask"], strict=True)
    for line, (p, m) in enumerate(rows, start=2):
        if "\0" in p or "\0" in m:
            # No file name can hold a NUL: the CSV is damaged or not text here.
            which = "path" if "\0" in p else "mask"
            rejects.append(Reject(f"{path}:{line}", f"{which} contains a NUL character"))
        elif p and m:
            index[absolute(base / p)] = Path(absolute(base / m))
    return index, rejects


def _check_pair(
    image: str, mask: Path, classes: MaskClasses | None = None
) -> tuple[Record | None, str, object]:
    """(None, reason, None) or (record-to-be, note, MaskInfo or class values)."""
    try:
        width, height = check_image(image)
    except BadImageError as e:
        return None, e.reason, None
    try:
        # The size first: a mask for another image is the likelier story than its content.
        mw, mh = mask_image_size(mask)
        if (mw, mh) != (width, height):
            return None, f"mask {mask.name} is {mw}x{mh}, the image {width}x{height}", None
        if classes is not None:
            return Record(image), "", read_class_mask(mask, classes)
        info = read_mask(mask)
    except BadImageError as e:
        return None, f"{e.reason} (mask {mask.name})", None
    except (OSError, ValueError) as e:
        return None, f"unreadable mask {mask.name} ({e})", None
    return Record(image), info.note, info


def attach_masks(
    records: list[Record],
    masks: str | os.PathLike,
    workdir: Path,
    classes: MaskClasses | None = None,
) -> tuple[list[Record], list[Reject], list[str]]:
    """Give each image record its mask; reject what has none or a bad one.

    Args:
        records: image records from the sources (absolute paths).
        masks: a folder of masks (matched by stem) or a CSV with path,mask columns.
        workdir: the dataset folder being built; converted masks go under
            ``images/masks/`` there.
        classes: the class table of multi-class masks; None for binary masks.

    Returns:
        (records with ``mask`` set and no fixed split, rejects, warnings).
    """
    masks = Path(masks)
    rejects: list[Reject] = []
    by_path: dict[str, Path] = {}
    if masks.is_dir():
        index, bad = _index_folder(masks)
        rejects.extend(bad)
        masks_abs = Path(absolute(masks)).resolve()
        image_records = [r for r in records if not _is_inside(r.path, masks_abs)]
        for r in image_records:
            found = index.get(Path(r.path).stem, [])
            if len(found) == 1:
                by_path[r.path] = found[0]
            elif len(found) > 1:
                names = ", ".join(p.name for p in found[:3])
                rejects.append(Reject(r.path, f"ambiguous mask: several match ({names})"))
        stems = {Path(r.path).stem for r in image_records}
        for key, paths in sorted(index.items()):
            if key not in stems:
                rejects.extend(
                    Reject(absolute(p), "skipped: a mask without an image") for p in paths
                )
    elif masks.is_file():
        by_path, bad = _index_csv(masks)
        rejects.extend(bad)
        image_records = records
    else:
        raise BadInputError(f"--masks {masks}: no such folder or CSV file")

    todo = [r for r in image_records if r.path in by_path]
    rejected = {x.path for x in rejects}
    for r in image_records:
        if r.path not in by_path and r.path not in rejected:
            rejects.append(Reject(r.path, f"no mask for this image (looked in {masks})"))

    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        checked = list(pool.map(lambda r: _check_pair(r.path, by_path[r.path], classes), todo))

    out: list[Record] = []
    warnings: list[str] = []
    repaired = 0
    for r, (ok, note, info) in zip(todo, checked, strict=True):
        if ok is None:
            rejects.append(Reject(r.path, note))
            continue
        mask_path = by_path[r.path]
        if note:
            repaired += 1
            warnings.append(f"{mask_path}: {note}")
        if classes is not None:
            # One encoding downstream: class values in a palette PNG of the classes' colours.
            rel = Path(MASK_DIR) / f"{len(out):06d}-{Path(r.path).stem}.png"
            write_class_png(workdir / rel, info, classes.palette())
            mask_ref = rel.as_posix()
        elif info.plain:
            mask_ref = absolute(mask_path)
        else:
            # A palette, RGB, 0/1 or repaired mask is written once as 0/255, so every
            # later reader sees the same plain file.
            rel = Path(MASK_DIR) / f"{len(out):06d}-{Path(r.path).stem}.png"
            write_mask_png(workdir / rel, info.mask)
            mask_ref = rel.as_posix()
        out.append(replace(r, label=None, split=None, mask=mask_ref))
    return out, rejects, warnings


def _is_inside(path: str, folder: Path) -> bool:
    p = Path(path).resolve()
    return folder == p or folder in p.parents
