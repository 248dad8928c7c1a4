"""Contact sheets: the findings as pictures, so the user looks rather than reads paths.

One PNG per issue kind found: pairs side by side (duplicates, near duplicates,
leaks) with their score and splits, the worst outliers with their reason, suspected
labels with the given and the likely class. The most certain findings come first.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from imgkit.fileio import atomic_path

TILE = 128
CAPTION = 28
MAX_ITEMS = 48
PAIR_KINDS = ("duplicate", "near_duplicate", "leak")


def _tile(path: str | os.PathLike | None) -> Image.Image:
    from imgkit.data.images import open_image

    canvas = Image.new("RGB", (TILE, TILE), (235, 235, 235))
    if path is None:
        return canvas
    try:
        with open_image(path, draft_size=(TILE, TILE)) as img:
            img = img.convert("RGB")
            img.thumbnail((TILE, TILE))
            canvas.paste(img, ((TILE - img.width) // 2, (TILE - img.height) // 2))
    except Exception:  # unreadable now: a grey tile says so without stopping the sheet
        ImageDraw.Draw(canvas).text((8, TILE // 2), "unreadable", fill=(120, 0, 0))
    return canvas


def _cells(kind: str, rows: pd.DataFrame, locate: Callable[[str], str | None]) -> list:
    """(images, two caption lines) per finding."""
    cells = []
    for r in rows.itertuples(index=False):
        if kind in PAIR_KINDS:
            images = [_tile(locate(r.path)), _tile(locate(r.other))]
            text = (f"{r.score:.3f}", f"{r.split} / {r.other_split}")
        elif kind == "label":
            images = [_tile(locate(r.path))]
            text = (f"given: {_label_of(r)}", f"likely: {r.other} ({r.score:.2f})")
        else:
            images = [_tile(locate(r.path))]
            text = (f"{r.other} {r.score:.2f}", str(r.path)[-22:])
        cells.append((images, text))
    return cells


def _label_of(row) -> str:
    return getattr(row, "given", "") or "?"


def contact_sheet(
    kind: str, rows: pd.DataFrame, path: str | os.PathLike, locate: Callable[[str], str | None]
) -> None:
    """Draw ``rows`` (one issue kind, most certain first) into the PNG ``path``.

    Args:
        kind: the issue kind.
        rows: its issues.csv rows (for labels, with a ``given`` column).
        path: the PNG to write (atomically).
        locate: issues.csv path -> the file to open.
    """
    cells = _cells(kind, rows.head(MAX_ITEMS), locate)
    per_cell = 2 if kind in PAIR_KINDS else 1
    cols = 4 if per_cell == 2 else 8
    cell_w, cell_h = TILE * per_cell + 8, TILE + CAPTION + 8
    nrows = max(1, -(-len(cells) // cols))
    sheet = Image.new("RGB", (cols * cell_w, nrows * cell_h + 24), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    draw.text((6, 6), f"{kind}: {len(rows)} found, {len(cells)} shown", fill="black", font=font)
    for k, (images, text) in enumerate(cells):
        x, y = (k % cols) * cell_w + 4, (k // cols) * cell_h + 28
        for m, img in enumerate(images):
            sheet.paste(img, (x + m * TILE, y))
        for line, t in enumerate(text):
            draw.text((x, y + TILE + 2 + 12 * line), t, fill="black", font=font)
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
