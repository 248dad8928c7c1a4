"""Input readers for ``imgkit prep``: one module per input layout.

Each reader module has ``NAME``, ``DESCRIPTION``, ``matches(spec) -> bool`` and
``read(spec, ctx) -> SourceResult``. :data:`READERS` is tried in order and the first
that matches reads the source, so a new layout (image+mask pairs, say) is one new
module added to the list, placed before the more general readers it would otherwise
fall through to. Zip and tar archives (:mod:`~imgkit.data.sources.archive`) are extracted
safely and then read by the folder readers, so every folder layout works inside one.
"""

from __future__ import annotations

from pathlib import Path

from imgkit.data.dataset import INFO, MANIFEST
from imgkit.data.sources import (
    archive,
    class_folders,
    csv_file,
    fashion_mnist,
    idc,
    idx_folder,
    kaggle_names,
    multilabel_columns,
    multilabel_csv,
    plain_folder,
)
from imgkit.data.sources.base import (
    Progress,
    SourceContext,
    SourceResult,
    absolute,
    stratified_subset,
)
from imgkit.errors import BadInputError

# Most specific first: a named data set, then files by type, then folder layouts,
# with "a folder of anything" last. Class subfolders come before Kaggle-style names
# because a folder structure is an explicit labelling and names are a guess. The IDC
# patient layout (<patient>/<0|1>/) comes before class folders, which would otherwise
# take each patient for a class.
READERS = (
    fashion_mnist,
    archive,
    multilabel_csv,
    multilabel_columns,
    csv_file,
    idx_folder,
    idc,
    class_folders,
    kaggle_names,
    plain_folder,
)

__all__ = [
    "READERS",
    "Progress",
    "SourceContext",
    "SourceResult",
    "absolute",
    "find_reader",
    "read_source",
    "stratified_subset",
]


def _kinds() -> str:
    return "; ".join(reader.DESCRIPTION for reader in READERS)


def find_reader(spec: str):
    """The reader module for one source argument.

    Raises:
        BadInputError: nothing can read it (missing path, unknown name, wrong file type).
    """
    path = Path(spec)
    if (path / INFO).is_file() and (path / MANIFEST).is_file():
        # Its images/ folder would pass for a class: point at the manifest instead.
        raise BadInputError(
            f"{spec} is already a dataset folder (use it directly, or give "
            f"{path / MANIFEST} as a CSV source to make a new one from it)"
        )
    for reader in READERS:
        if reader.matches(spec):
            return reader
    if path.is_symlink() and not path.exists():
        raise BadInputError(f"{spec}: broken symbolic link")
    if not path.exists():
        raise BadInputError(f"{spec}: no such file or folder (a source is one of: {_kinds()})")
    raise BadInputError(f"{spec}: cannot read this kind of source (a source is one of: {_kinds()})")


def read_source(spec: str, ctx: SourceContext) -> SourceResult:
    """Read one source argument with the first reader that matches it."""
    return find_reader(spec).read(spec, ctx)
