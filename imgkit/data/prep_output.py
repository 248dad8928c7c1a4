"""The folder prep writes: checked before the run, replaced whole at the end.

Never inside a source, never a folder that is not a dataset.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections import Counter
from pathlib import Path

from imgkit.data.bad_inputs import reason_kind
from imgkit.data.dataset import (
    INFO,
    MANIFEST,
    REJECTS,
)
from imgkit.data.images import is_skipped
from imgkit.errors import BadInputError, OutputExistsError


def _is_inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def _check_output(output: Path, sources: list[str], overwrite: bool) -> None:
    """Refuse outputs that would replace the user's data or land inside an input."""
    out = output.resolve()
    if output.exists() or output.is_symlink():
        if not overwrite:
            raise OutputExistsError(f"{output} already exists (pass --overwrite to replace it)")
        is_dataset = (output / INFO).is_file() or (output / MANIFEST).is_file()
        if (
            not output.is_dir()
            or output.is_symlink()
            or not (is_dataset or not any(output.iterdir()))
        ):
            raise OutputExistsError(
                f"{output} exists and is not a dataset folder; --overwrite replaces only dataset "
                "folders made by imgkit prep, so choose another output"
            )
    for spec in sources:
        src = Path(spec)
        if not src.exists():
            continue
        src = src.resolve()
        if src.is_dir() and _is_inside(out, src):
            raise BadInputError(
                f"the output {output} is inside the source folder {spec}; choose an output "
                "outside it (prep never writes into its inputs)"
            )
        if _is_inside(src, out):
            raise BadInputError(
                f"the source {spec} is inside the output {output}; choose another output"
            )


def _replace_folder(new: Path, output: Path) -> None:
    """Swap a finished folder in for an old one; the old one is removed only then."""
    old = output.with_name(f".{output.name}.old-{secrets.token_hex(4)}")
    os.replace(output, old)
    os.replace(new, output)
    shutil.rmtree(old, ignore_errors=True)


def summarize(info: dict, output: Path, rejects, cached: list, warnings: list) -> dict:
    """What ``prepare`` returns: dataset.json's content and what the run met."""
    n_skipped = sum(1 for r in rejects if is_skipped(r.reason))
    return {
        **info,
        "path": str(output),
        "rejects_file": str(output / REJECTS),
        "bad": len(rejects) - n_skipped,
        "skipped": n_skipped,
        "reject_reasons": Counter(reason_kind(r.reason) for r in rejects).most_common(),
        "cached_splits": cached,
        "warnings": warnings,
    }
