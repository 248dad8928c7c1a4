"""``imgkit audit``: find duplicates, leaks, outliers, label issues and imbalance."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.lib.format import open_memmap

from imgkit.data.dataset import CACHE_DIR, Dataset, label_set
from imgkit.errors import BadInputError
from imgkit.evaluate.audit import duplicates, labels, neighbours, outliers
from imgkit.evaluate.audit.inputs import ImageSet, against_images, align_predictions, data_images
from imgkit.evaluate.audit.join import join
from imgkit.evaluate.audit.report import counts, issues_frame, write_outputs
from imgkit.evaluate.audit.scan import THUMB, Scan, scan_images
from imgkit.evaluate.audit.thresholds import Thresholds
from imgkit.fileio import atomic_path


@dataclass
class AuditResult:
    """What an audit found.

    Attributes:
        issues: issues.csv's rows.
        summary: summary.json's content.
        clusters: groups of the data set's images that are copies of one another
            (manifest paths), for ``--dedupe``.
        exact: manifest path -> its exact copies (same pixels) among later rows.
    """

    issues: pd.DataFrame
    summary: dict
    clusters: list[list[str]] = field(default_factory=list)
    exact: dict[str, list[str]] = field(default_factory=dict)


class _Clock:
    """Seconds per step of the audit, for summary.json (and the scale benchmark)."""

    def __init__(self):
        self.start = self.last = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def lap(self, step: str) -> None:
        now = time.perf_counter()
        self.seconds[step] = round(self.seconds.get(step, 0.0) + now - self.last, 2)
        self.last = now

    def total(self) -> float:
        return time.perf_counter() - self.start


def make_embedder(features: str, weights: str = "imagenet", trust: bool | None = None):
    """The embedder ``--features`` names: "mobilenetv2", a bundle folder, or None for "none"."""
    from imgkit.evaluate.audit import embed

    if features == "none":
        return None
    if features == "mobilenetv2":
        return embed.mobilenet_embedder(weights)
    return embed.bundle_embedder(features, trust=trust)


def _pass(images: ImageSet, embedder, say, thumbs_file=None, emb_file=None):
    """One pass over the images: the scan, and the embeddings when ``embedder`` is given.

    With ``thumbs_file`` and ``emb_file`` the thumbnails and vectors are written into
    memory maps there (so memory stays flat at any size), else held in memory.
    """
    n = len(images.paths)
    say(f"reading {n} images" + (f" and embedding them ({embedder.name})" if embedder else ""))
    spec = embedder.spec if embedder else None
    thumbs = None
    if thumbs_file is not None and n:
        thumbs = open_memmap(thumbs_file, "w+", np.uint8, (n, THUMB, THUMB))

    def new_vectors(dim: int) -> np.ndarray:
        if emb_file is not None and n:
            return open_memmap(emb_file, "w+", np.float32, (n, dim))
        return np.zeros((n, dim), np.float32)

    vectors = None
    for scan, idx, pixels in scan_images(images.paths, spec, thumbs=thumbs):
        if scan is not None:
            break
        if embedder is not None and len(idx):
            got = embedder(pixels)
            if vectors is None:
                vectors = new_vectors(got.shape[1])
            vectors[idx] = got
    if embedder is not None and vectors is None:
        vectors = new_vectors(1)
    for mapped in (thumbs, vectors):
        if isinstance(mapped, np.memmap):
            mapped.flush()
    return scan, vectors


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


def _scan(
    images: ImageSet, embedder, say: Callable[[str], None], scratch: Path
) -> tuple[Scan, np.ndarray | None]:
    """Scan (and embed) ``images``, or read both from the dataset's cache.

    The scan and the embeddings are cached apart: embeddings made once (the costly
    part) are reused when only the scan must be redone, and both are read back as
    memory maps, so a 277,000-image audit does not hold 1.4 GB of features and
    1.1 GB of thumbnails in memory. Images with no cache (a folder of images, a
    read-only data set) are scanned into memory maps in the folder ``scratch``.
    """
    ds = images.dataset
    cache = None if ds is None else ds.root / CACHE_DIR
    if cache is None or not _writable(cache):
        if cache is not None:  # a read-only data set still gets audited, just not cached
            say(f"cannot cache in {cache}")
        scratch.mkdir(parents=True, exist_ok=True)
        return _pass(images, embedder, say, scratch / "thumbs.npy", scratch / "vectors.npy")
    scan_file = cache / f"audit-scan-{ds.hash}.npz"
    thumbs_file = cache / f"audit-thumbs-{ds.hash}.npy"
    emb_file = cache / f"embed-{embedder.name}-{ds.hash}.npy" if embedder else None
    need_emb = emb_file is not None and not emb_file.is_file()
    if need_emb or not (scan_file.is_file() and thumbs_file.is_file()):
        with contextlib.ExitStack() as stack:
            tmp_thumbs = stack.enter_context(atomic_path(thumbs_file))
            tmp_emb = stack.enter_context(atomic_path(emb_file)) if need_emb else None
            scan, vectors = _pass(images, embedder if need_emb else None, say, tmp_thumbs, tmp_emb)
            if not len(images.paths):  # nothing to map: written as plain arrays
                np.save(tmp_thumbs, scan.thumbs)
                if need_emb:
                    np.save(tmp_emb, vectors)
            del vectors
            scan.thumbs = None
            with atomic_path(scan_file) as tmp:
                scan.save(tmp)
    vectors = np.load(emb_file, mmap_mode="r") if emb_file else None
    return Scan.load(scan_file, thumbs_file), vectors


def _label_findings(aligned, data: ImageSet, classes: list[str], t: Thresholds) -> list[dict]:
    rows, proba = aligned
    index = {c: k for k, c in enumerate(classes)}
    given = np.array([index[data.labels[r]] for r in rows], np.int64)
    names = [data.names[r] for r in rows]
    splits = [data.splits[r] for r in rows]
    return labels.label_rows(names, splits, classes, proba, given, t.label_margin)


def _duplicate_groups(pairs, names: list[str]) -> tuple[dict[int, list[str]], dict]:
    """The data set's duplicate clusters (a pair with an ``against`` image is a leak, not
    a cluster) and each exact copy's twins, by name."""
    n = len(names)
    inner = [p for p in pairs if p.j < n]
    ids = duplicates.clusters(n, inner)
    groups: dict[int, list[str]] = {}
    for i in np.flatnonzero(np.bincount(ids, minlength=n)[ids] > 1):
        groups.setdefault(int(ids[i]), []).append(names[i])
    exact = {names[i]: [names[j] for j in js] for i, js in duplicates.exact_groups(inner).items()}
    return groups, exact


@dataclass
class _Found:
    """What the pass over the images found (the large arrays are gone with the scratch)."""

    names: list[str]
    paths: list
    rows: list[dict]  # issues.csv's rows for copies, leaks and outliers
    pairs: list[duplicates.Pair]
    candidates: int
    unread: list[tuple[str, str]]  # (path, why) of the images that could not be decoded


def _find(d: ImageSet, o, embedder, t: Thresholds, multi: bool, say, clock, scratch: Path):
    """Scan both sets, join them (on disk, in ``scratch``), find copies, leaks, outliers."""
    sd, vd = _scan(d, embedder, say, scratch / "data")
    so, vo = _scan(o, embedder, say, scratch / "against") if o is not None else (None, None)
    names, paths, splits, scan, vectors = join(d, o, sd, so, vd, vo, scratch)
    del so, vo  # the joined copies are read from here on
    n_data = len(d.names)
    data_only = np.arange(len(names)) < n_data
    clock.lap("scan")
    say("searching for copies")
    nbr = neighbours.neighbours(vectors, scan.ok, t.neighbours) if vectors is not None else None
    cands = {k: c for k, c in duplicates.candidates(scan, nbr, t).items() if data_only[k[0]]}
    clock.lap("search")
    exact = [p for p in duplicates.exact_pairs(scan) if data_only[p.i]]
    say(f"checking {len(cands)} candidate pairs")
    pairs = exact + duplicates.confirm_pairs(scan, cands, paths, t)
    rows = duplicates.pair_rows(pairs, names, splits)
    clock.lap("confirm")
    z = None
    if vd is not None and nbr is not None:
        # A multi-label image belongs to no one class: only the data-wide outlier z.
        classes = [""] * n_data if multi else d.labels
        z = outliers.embedding_z(vd, sd.ok, classes, nbr[1][:n_data])
    reasons = outliers.rule_reasons(sd.stats, sd.ok, t)
    rows += outliers.outlier_rows(d.names, d.splits, reasons, z, t)
    clock.lap("outliers")
    unread = [(str(paths[i]), scan.reasons[i]) for i in np.flatnonzero(~scan.ok)]
    return _Found(names, paths, rows, pairs, len(cands), unread)


def run_audit(
    data: str | os.PathLike,
    output: str | os.PathLike,
    *,
    against: str | os.PathLike | None = None,
    predictions: str | os.PathLike | None = None,
    features: str = "mobilenetv2",
    weights: str = "imagenet",
    thresholds: Thresholds | None = None,
    trust: bool | None = None,
    say: Callable[[str], None] = lambda message: None,
) -> AuditResult:
    """Audit dataset folder ``data``; write issues.csv, summary.json, sheets into ``output``.

    Args:
        data: a dataset folder (``imgkit prep``).
        output: the folder to write into.
        against: a second dataset folder or a folder of images (e.g. a test set).
        predictions: predict's CSV for ``data``'s images (out-of-fold where possible).
        features: "mobilenetv2" (ImageNet), a model bundle folder, or "none" (hashes
            and statistics only: no near duplicates beyond the hash, no embedding outliers).
        weights: MobileNetV2's weights: "imagenet" (Keras's cache) or a file.
        thresholds: what makes a finding (:class:`Thresholds`).
        trust: let a ``features`` bundle's code run (Lambda layers).
        say: called with a line of progress now and then.
    """
    t = thresholds or Thresholds()
    clock = _Clock()
    ds = Dataset.load(data)
    d = data_images(ds)
    multi = ds.task == "multilabel"
    if multi and predictions is not None:
        raise BadInputError(
            f"--predictions {predictions}: label issues are found for classification "
            f"datasets only; {data} is multilabel"
        )
    o = against_images(against) if against is not None else None
    # Bad predictions stop the audit before the long pass over the images, not after.
    aligned = None if predictions is None else align_predictions(predictions, d, ds.classes)
    embedder = make_embedder(features, weights, trust)
    clock.lap("setup")  # reading the manifest and predictions, loading the network
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    # The scans with no cache and the joined arrays: memory maps, removed at the end.
    with tempfile.TemporaryDirectory(prefix=".audit-scratch-", dir=out) as scratch:
        found = _find(d, o, embedder, t, multi, say, clock, Path(scratch))
    names, paths, rows, pairs = found.names, found.paths, found.rows, found.pairs
    n_data = len(d.names)
    if aligned is not None:
        rows += _label_findings(aligned, d, ds.classes, t)
    # Multi-label: each label counted once per image that carries it.
    counted = [c for v in d.labels for c in label_set(v)] if multi else d.labels
    imbalance, per_class = outliers.imbalance_rows(counted, t)
    rows += imbalance
    clock.lap("labels")
    df = issues_frame(rows)
    groups, exact_map = _duplicate_groups(pairs, d.names)
    rejects = [*d.rejects, *(o.rejects if o else [])]
    rejects += found.unread
    given = {"data": data, "against": against, "predictions": predictions}
    total, by_split = counts(df)
    summary = {
        **{k: None if v is None else str(v) for k, v in given.items()},
        "images": n_data,
        "against_images": 0 if o is None else len(o.names),
        "rejected": len(rejects),
        "features": embedder.name if embedder else "none",
        "issues": total,
        "by_split": by_split,
        "class_counts": per_class,
        "candidate_pairs": found.candidates,
        "clusters": len(groups),
        "thresholds": t.to_dict(),
        "seconds": clock.seconds,
    }
    located = {n: str(p) for n, p in zip(names, paths, strict=True)}
    labelled = dict(zip(d.names, d.labels, strict=True))

    def finish(_summary: dict) -> None:  # summary.json's own writing is not timed
        clock.lap("write")
        clock.seconds["total"] = round(clock.total(), 2)

    write_outputs(out, df, summary, rejects, located.get, labelled, finish)
    return AuditResult(df, summary, list(groups.values()), exact_map)
