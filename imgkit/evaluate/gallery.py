"""Galleries of scored images for a static HTML page: what ``eval -o`` and ``report`` share.

A :class:`Scored` set (each image's file, true and predicted class, probabilities)
becomes the page's confusion matrix, whose every cell links to a section holding its
images, the top losses (the most confident mistakes) and the most confused class
pairs. Images are copied beside the page as small thumbnails with numbered names, so
the folder can be sent on its own; the names users gave their files appear only as
text, and the templates escape all text (:func:`render`). Nothing is loaded from the
network and nothing needs JavaScript.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from imgkit.fileio import atomic_path, write_text

TEMPLATES = Path(__file__).resolve().parent / "templates"
THUMB = 160  # pixels, the long side of a gallery thumbnail
PER_CELL = 24  # images shown per confusion cell
TOP_LOSSES = 24
PAIRS = 4  # most confused class pairs shown
PER_PAIR = 6


@dataclass
class Scored:
    """Classification results to show.

    Attributes:
        files: each image's file (to read it).
        names: each image's path as the user wrote it (to show it).
        classes: class names in index order.
        y_true, y_pred: class indices.
        proba: (n, k) probabilities, or None (labels only).
    """

    files: list[str]
    names: list[str]
    classes: list[str]
    y_true: np.ndarray
    y_pred: np.ndarray
    proba: np.ndarray | None = None

    def loss(self) -> np.ndarray:
        """Each image's log loss (-log P(true class)); 0/1 mistakes without probabilities."""
        if self.proba is None:
            return (self.y_true != self.y_pred).astype(np.float64)
        p = self.proba[np.arange(len(self.y_true)), self.y_true]
        return -np.log(np.clip(p, 1e-15, 1.0))

    def confidence(self) -> np.ndarray:
        if self.proba is None:
            return np.full(len(self.y_pred), np.nan)
        return self.proba[np.arange(len(self.y_pred)), self.y_pred]


@dataclass
class Gallery:
    """Images written beside a page, under ``folder/subdir``, with page-relative links.

    Every image gets a numbered name (``g0001.png``): a user's file name never becomes
    part of a path or a link. A file met twice is written once.
    """

    folder: Path
    subdir: str = "images"
    written: dict[str, str] = field(default_factory=dict)

    def _next(self) -> tuple[Path, str]:
        rel = f"{self.subdir}/g{len(self.written) + 1:04d}.png"
        self.written[f"#{len(self.written)}"] = rel
        return self.folder / rel, rel

    def save(self, image: Image.Image) -> str:
        """Write ``image`` as the next PNG; its link."""
        path, rel = self._next()
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            image.save(tmp, format="PNG")
        return rel

    def overlay(self, file: str | os.PathLike, heat, resize: str, caption: str) -> str:
        """``file`` with the heatmap ``heat`` (at the model's input size, brought to the
        image's own as ``resize`` framed it) drawn over it and ``caption``; its link."""
        from imgkit.data.images import open_image
        from imgkit.infer.heatmap import overlay_panel, to_own_size

        with open_image(file) as img:
            image = img.convert("RGB")
        panel = overlay_panel(image, to_own_size(heat, image.size, resize), caption)
        panel.thumbnail((336, 336))
        return self.save(panel)

    def thumbnail(self, file: str | os.PathLike) -> str | None:
        """A thumbnail of ``file`` (its link), or None when the file cannot be read."""
        from imgkit.data.images import open_image
        from imgkit.errors import BadImageError

        key = os.fspath(file)
        if key in self.written:
            return self.written[key]
        try:
            with open_image(file) as img:
                image = img.convert("RGB")
        except (BadImageError, OSError):
            return None
        image.thumbnail((THUMB, THUMB))
        if min(image.size) < THUMB // 2:  # tiny images grow, pixel by pixel
            k = max(1, THUMB // max(image.size))
            image = image.resize((image.width * k, image.height * k), Image.Resampling.NEAREST)
        self.written[key] = link = self.save(image)
        return link


def _tile(scored: Scored, i: int, gallery: Gallery, overlays: dict[int, str]) -> dict:
    conf = scored.confidence()[i]
    return {
        "src": gallery.thumbnail(scored.files[i]),
        "overlay": overlays.get(i),
        "name": scored.names[i],
        "true": scored.classes[scored.y_true[i]],
        "pred": scored.classes[scored.y_pred[i]],
        "confidence": None if np.isnan(conf) else float(conf),
        "loss": float(scored.loss()[i]),
    }


def worst(scored: Scored, k: int = TOP_LOSSES) -> list[int]:
    """The ``k`` most confident mistakes, worst first (highest log loss)."""
    wrong = np.flatnonzero(scored.y_true != scored.y_pred)
    return [int(i) for i in wrong[np.argsort(-scored.loss()[wrong], kind="stable")][:k]]


def classification_sections(
    scored: Scored, gallery: Gallery, overlays: dict[int, str] | None = None
) -> dict:
    """What the page's templates need: the confusion matrix (cells with counts, shares
    of their row and anchors), each cell's images, the top losses and confused pairs.

    Args:
        scored: the results.
        gallery: where thumbnails go.
        overlays: image index -> link of its heatmap overlay (top losses), if made.
    """
    overlays = overlays or {}
    k = len(scored.classes)
    matrix = np.zeros((k, k), dtype=int)
    np.add.at(matrix, (scored.y_true, scored.y_pred), 1)
    order = np.argsort(-scored.loss(), kind="stable")  # the worst of each cell first
    members: dict[tuple[int, int], list[int]] = {}
    for i in order:
        members.setdefault((int(scored.y_true[i]), int(scored.y_pred[i])), []).append(int(i))
    rows = []
    for t in range(k):
        total = max(int(matrix[t].sum()), 1)
        rows.append(
            [
                {
                    "count": int(matrix[t, p]),
                    "share": matrix[t, p] / total,
                    "anchor": f"cell-{t}-{p}",
                }
                for p in range(k)
            ]
        )
    cells = [
        {
            "anchor": f"cell-{t}-{p}",
            "true": scored.classes[t],
            "pred": scored.classes[p],
            "count": len(idx),
            "tiles": [_tile(scored, i, gallery, overlays) for i in idx[:PER_CELL]],
        }
        for (t, p), idx in sorted(members.items())
    ]
    off = [(int(matrix[t, p] + matrix[p, t]), t, p) for t in range(k) for p in range(t + 1, k)]
    pairs = [
        {
            "a": scored.classes[t],
            "b": scored.classes[p],
            "count": n,
            "a_as_b": [
                _tile(scored, i, gallery, overlays) for i in members.get((t, p), [])[:PER_PAIR]
            ],
            "b_as_a": [
                _tile(scored, i, gallery, overlays) for i in members.get((p, t), [])[:PER_PAIR]
            ],
        }
        for n, t, p in sorted(off, key=lambda x: (-x[0], x[1], x[2]))[:PAIRS]
        if n
    ]
    losses = [_tile(scored, i, gallery, overlays) for i in worst(scored)]
    return {
        "classes": scored.classes,
        "matrix": rows,
        "cells": cells,
        "pairs": pairs,
        "losses": losses,
    }


def render(template: str, **context) -> str:
    """Render one of the page templates with every value HTML-escaped (autoescape)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda v: "" if v is None else f"{100 * v:.1f}%"
    env.filters["num"] = lambda v: (
        "" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))
    )
    return env.get_template(template).render(**context)


def write_page(folder: str | os.PathLike, template: str, **context) -> Path:
    """Render ``template`` into ``folder/index.html`` (atomically); its path."""
    from imgkit import __version__

    context.setdefault("version", __version__)
    return write_text(Path(folder) / "index.html", render(template, **context))
