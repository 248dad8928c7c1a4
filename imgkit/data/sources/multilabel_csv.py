"""A multi-label CSV: ``path,labels`` or Planet's ``image_name,tags``.

Each row names one image and all its labels, separated by spaces (or by
``--label-sep``). ``path`` is relative to the CSV (or to ``--images DIR`` when given);
Planet's ``image_name`` is a name without extension, looked up in ``--images DIR``
(``train_0`` is ``DIR/train_0.jpg``, ``.tif`` or any image type). A row whose image is
not there, or with no labels (unless ``--allow-empty``), goes to rejects.csv with the
reason; one that is there but unreadable is rejected by prep's check of every image.
"""

from __future__ import annotations

from pathlib import Path

from imgkit.data.dataset import LABEL_SEP
from imgkit.data.images import IMAGE_EXTENSIONS
from imgkit.data.records import Record, Reject
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


class Rows:
    """What a multi-label CSV's rows become: records, and rejects with their reasons.

    Shared by this reader and the one for a CSV of 0/1 columns
    (:mod:`imgkit.data.sources.multilabel_columns`): both name images the same way
    (``path`` relative to the CSV or ``--images``, or Planet's ``image_name``).
    """

    def __init__(self, csv_path: Path, path_col: str, ctx: SourceContext):
        self.csv_path, self.ctx = csv_path, ctx
        self.by_name = path_col == "image_name"
        if self.by_name and ctx.images is None:
            raise BadInputError(
                f"{csv_path}: image_name gives names without a folder; add --images DIR "
                "(the folder holding train_0.jpg ...)"
            )
        self.base = Path(ctx.images) if ctx.images is not None else csv_path.resolve().parent
        self.stems = _stems(self.base) if self.by_name else {}
        self.records: list[Record] = []
        self.rejects: list[Reject] = []

    def add(self, line: int, raw: str, labels: list[str], group=None) -> None:
        """One row: its image (``raw`` as the CSV names it) and its labels."""
        where = f"{self.csv_path.name} line {line}"
        raw = raw.strip()
        if not raw or "\0" in raw:
            self.rejects.append(Reject(f"{self.csv_path}:{line}", "empty path or a NUL character"))
            return
        base = self.base
        found = self.stems.get(raw) if self.by_name else None
        if self.by_name and found is None and not (base / raw).is_file():
            self.rejects.append(
                Reject(str(base / raw), f"no image named {raw!r} in {base} ({where})")
            )
            return
        path = absolute(found if found is not None else base / raw)
        if not labels and not self.ctx.allow_empty:
            # A row left blank is as likely a mistake as an image with nothing on it.
            reason = f"no labels ({where}; --allow-empty keeps such images, with no label)"
            self.rejects.append(Reject(path, reason))
            return
        spaced = [label for label in labels if any(ch.isspace() for ch in label)]
        if spaced:
            reason = f"label {spaced[0]!r} has a space; multi-label names cannot ({where})"
            self.rejects.append(Reject(path, reason))
            return
        self.records.append(Record(path, label=LABEL_SEP.join(labels), group=group or None))

    def result(self, kind: str) -> SourceResult:
        description = f"{kind} {self.csv_path.resolve()}" + (
            f", images in {self.base}" if self.by_name else ""
        )
        return SourceResult(self.records, self.rejects, description=description, task="multilabel")


def read(spec: str, ctx: SourceContext) -> SourceResult:
    """Read the listed images and their label sets; bad rows become rejects."""
    csv_path = Path(spec)
    table = _read_table(csv_path)
    table.columns = [str(c).strip().lower() for c in table.columns]
    path_col = next(c for c in _PATH_COLUMNS if c in table.columns)
    label_col = next(c for c in _LABEL_COLUMNS if c in table.columns)
    rows = Rows(csv_path, path_col, ctx)
    for line, row in enumerate(table.to_dict("records"), start=2):
        labels = split_labels(row[label_col], ctx.label_sep)
        rows.add(line, row[path_col], labels, row.get("group"))
    return rows.result("multi-label CSV")
