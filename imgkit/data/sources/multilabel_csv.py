"""A multi-label CSV: ``path,labels`` or Planet's ``image_name,tags``.

Each row names one image and all its labels, separated by spaces (or by
``--label-sep``). ``path`` is relative to the CSV (or to ``--images DIR`` when given);
Planet's ``image_name`` is a name without extension, looked up in ``--images DIR``
(``train_0`` is ``DIR/train_0.jpg``, ``.tif`` or any image type). A row whose image is
not there, or with no labels, goes to rejects.csv with the reason.
"""

from __future__ import annotations

from pathlib import Path

from imgkit.data.dataset import LABEL_SEP, Record, Reject
from imgkit.data.images import IMAGE_EXTENSIONS
from imgkit.data.sources.base import SourceContext, SourceResult, absolute
from imgkit.data.sources.csv_file import _read_table
from imgkit.errors import BadInputError

NAME = "multilabel-csv"
DESCRIPTION = (
    "a multi-label CSV: path,labels or Planet's image_name,tags (with --images DIR), "
    "labels separated by spaces or --label-sep"
)
_PATH_COLUMNS = ("path", "image_name")
_LABEL_COLUMNS = ("labels", "tags")


def _header(path: Path) -> list[str]:
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            first = f.readline()
    except OSError:
        return []
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    return [c.strip().strip('"').lower() for c in first.split(sep)]


def matches(spec: str) -> bool:
    path = Path(spec)
    if path.suffix.lower() not in (".csv", ".tsv") or not path.is_file():
        return False
    columns = _header(path)
    return any(c in columns for c in _PATH_COLUMNS) and any(c in columns for c in _LABEL_COLUMNS)


def _stems(folder: Path) -> dict[str, Path]:
    """The images in ``folder`` (not below it) by file name without extension."""
    if not folder.is_dir():
        raise BadInputError(f"--images {folder}: no such folder")
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file():
            found.setdefault(p.stem, p)
    return found


def split_labels(text: str, sep: str) -> list[str]:
    """The distinct labels of one cell, in sorted order."""
    parts = text.split() if sep == " " else text.split(sep)
    return sorted({part.strip() for part in parts if part.strip()})


def read(spec: str, ctx: SourceContext) -> SourceResult:
    """Read the listed images and their label sets; bad rows become rejects."""
    csv_path = Path(spec)
    table = _read_table(csv_path)
    table.columns = [str(c).strip().lower() for c in table.columns]
    path_col = next(c for c in _PATH_COLUMNS if c in table.columns)
    label_col = next(c for c in _LABEL_COLUMNS if c in table.columns)
    by_name = path_col == "image_name"
    if by_name and ctx.images is None:
        raise BadInputError(
            f"{csv_path}: image_name gives names without a folder; add --images DIR "
            "(the folder holding train_0.jpg ...)"
        )
    base = Path(ctx.images) if ctx.images is not None else csv_path.resolve().parent
    stems = _stems(base) if by_name else {}
    records: list[Record] = []
    rejects: list[Reject] = []
    for line, row in enumerate(table.to_dict("records"), start=2):
        where = f"{csv_path.name} line {line}"
        raw = row[path_col].strip()
        if not raw or "\0" in raw:
            rejects.append(Reject(f"{csv_path}:{line}", "empty path or a NUL character"))
            continue
        found = stems.get(raw) if by_name else None
        if by_name and found is None and not (base / raw).is_file():
            rejects.append(Reject(str(base / raw), f"no image named {raw!r} in {base} ({where})"))
            continue
        path = absolute(found if found is not None else base / raw)
        labels = split_labels(row[label_col], ctx.label_sep)
        if not labels:
            rejects.append(Reject(path, f"no labels ({where})"))
            continue
        spaced = [label for label in labels if any(ch.isspace() for ch in label)]
        if spaced:
            rejects.append(
                Reject(path, f"label {spaced[0]!r} has a space; multi-label names cannot ({where})")
            )
            continue
        records.append(Record(path, label=LABEL_SEP.join(labels), group=row.get("group") or None))
    description = f"multi-label CSV {csv_path.resolve()}" + (
        f", images in {base}" if by_name else ""
    )
    return SourceResult(records, rejects, description=description, task="multilabel")
