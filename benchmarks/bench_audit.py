"""Benchmark: ``imgkit audit`` against imagehash pHash on a set with known problems.

The set (``audit_set.py``): 835 real images (Fashion-MNIST items and photo tiles),
180 copies of them (exact, JPEG, resized, cropped ~4% a side, brighter, blurred),
29 foreign images, 30 wrong labels, and an ``--against`` folder with 30 more copies
(leaks) among 150 images. Reported:

- duplicate pairs: recall (true pairs whose images end up in one found cluster)
  and precision (found pairs that are true), for the audit and for pHash at Hamming
  distance <= 4 and <= 8 (all pairs compared, as a user would with imagehash);
- cross-set leaks: data/against pairs and true pairs across the data set's splits;
- outliers and wrong labels: how many of the known ones are in the top list (as
  long as the known list) and among all reported; labels use the out-of-fold
  predictions (5 folds) of the most accurate of four predictors on the cached
  embeddings and 28 px grey pixels (chosen by out-of-fold accuracy).

Time, step by step at 3,200 and 32,000 images: ``bench_audit_scale.py``.

Usage: python benchmarks/bench_audit.py [--workdir DIR]
Needs the audit extra, scikit-learn, imagehash, Debian's dataset-fashion-mnist and
../shared/weights (MobileNetV2 ImageNet weights).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
from _table import print_table
from audit_set import build
from PIL import Image

WEIGHTS = (
    Path(__file__).resolve().parents[1].parent
    / "shared/weights/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
)


def _weights() -> str:
    for p in (WEIGHTS, Path("/work/shared/weights") / WEIGHTS.name):
        if p.is_file():
            return str(p)
    sys.exit(f"missing {WEIGHTS}")


def _components(n: int, pairs) -> np.ndarray:
    from imgkit.evaluate.audit.duplicates import Pair, clusters

    return clusters(n, [Pair(i, j, False, 1.0, "") for i, j in pairs])


def pair_scores(truth_cluster: np.ndarray, found: set[tuple[int, int]]) -> tuple[float, float]:
    """(recall over true pairs via found clusters, precision of found pairs)."""
    n = len(truth_cluster)
    comp = _components(n, found)
    true_pairs = [
        (i, j)
        for members in pd.Series(range(n)).groupby(truth_cluster).groups.values()
        if len(members) > 1
        for i, j in combinations(sorted(members), 2)
    ]
    recall = np.mean([comp[i] == comp[j] for i, j in true_pairs])
    good = [truth_cluster[i] == truth_cluster[j] for i, j in found]
    return float(recall), float(np.mean(good)) if good else 0.0


def phash_pairs(paths: list[str], max_bits: int, data_count: int) -> set[tuple[int, int]]:
    """All pairs (at least one in the data set) with imagehash pHash distance <= max_bits."""
    import imagehash
    from PIL import Image

    hashes = [imagehash.phash(Image.open(p)) for p in paths]
    bits = np.array([h.hash.flatten() for h in hashes], np.uint8)
    out = set()
    for i in range(data_count):
        d = (bits[i + 1 :] != bits[i]).sum(axis=1)
        out.update((i, i + 1 + int(k)) for k in np.flatnonzero(d <= max_bits))
    return out


def _candidates(x: np.ndarray, pixels: np.ndarray) -> dict:
    """Out-of-fold predictors to choose from, by accuracy (never by the wrong-label score)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def std_lr(c):
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=c))

    knn = KNeighborsClassifier(15, weights="distance", metric="cosine")
    return {
        "logistic, embeddings": (LogisticRegression(max_iter=2000, C=0.5), x),
        "logistic, standardised embeddings": (std_lr(0.1), x),
        "kNN-15 cosine, embeddings": (knn, x),
        "logistic, standardised embeddings + 28 px grey pixels": (
            std_lr(0.01), np.hstack([x, pixels])),
    }  # fmt: skip


def oof_predictions(data: Path, out: Path) -> Path:
    """Out-of-fold (5 folds) probabilities of the most accurate of a few predictors.

    The predictors see the audit's cached embeddings and, as a second view, the images
    shrunk to 28x28 grey (what the upscaled Fashion items hold); each is scored by its
    out-of-fold accuracy against the given labels and the best one's CSV is written.
    """
    from sklearn.model_selection import cross_val_predict

    from imgkit.data.dataset import Dataset

    ds = Dataset.load(data)
    (emb,) = sorted((data / ".cache").glob(f"embed-mobilenetv2-*-{ds.hash}.npy"))
    x, labels = np.load(emb), ds.manifest["label"].to_numpy()
    pixels = np.stack([
        np.asarray(Image.open(data / p).convert("L").resize((28, 28), Image.BILINEAR),
                   np.float32).ravel() / 255
        for p in ds.manifest["path"]
    ])  # fmt: skip
    classes = np.array(sorted(set(labels)))
    best = None
    for name, (model, feats) in _candidates(x, pixels).items():
        proba = cross_val_predict(model, feats, labels, cv=5, method="predict_proba")
        acc = float((classes[proba.argmax(axis=1)] == labels).mean())
        print(f"out-of-fold accuracy, {name}: {acc:.1%}")
        if best is None or acc > best[0]:
            best = (acc, name, proba)
    acc, name, proba = best
    print(f"label predictions from: {name} ({acc:.1%})")
    df = pd.DataFrame(proba, columns=[f"p_{c}" for c in classes])
    df.insert(0, "confidence", proba.max(axis=1))
    df.insert(0, "label", classes[proba.argmax(axis=1)])
    df.insert(0, "path", ds.manifest["path"])
    df.to_csv(out, index=False)
    return out


def _audit(data, out, **kw):
    from imgkit.evaluate.audit import run_audit

    return run_audit(data, out, weights=_weights(), **kw)


def quality(work: Path) -> None:
    from imgkit.data.prep import prepare
    from imgkit.data.prep_options import PrepOptions

    truth = build(work / "set")
    data, against = work / "data", work / "set" / "against"
    prepare([str(work / "set" / "src")], data, PrepOptions(seed=0))
    _audit(data, work / "audit0", against=against)  # fills the embedding cache
    preds = oof_predictions(data, work / "oof.csv")
    res = _audit(data, work / "audit", against=against, predictions=preds)
    df, n = res.issues, res.summary["images"]
    names = [*pd.read_csv(data / "manifest.csv", dtype=str)["path"]]
    splits = [*pd.read_csv(data / "manifest.csv", dtype=str)["split"]]
    against_names = sorted(p.as_posix() for p in against.iterdir())
    everything = names + against_names
    index = {p: i for i, p in enumerate(everything)}

    def key(rel: str) -> int:
        if rel.startswith("against/"):
            return index[(work / "set" / rel).as_posix()]
        return index["../set/src/" + rel]

    cluster = np.arange(len(everything))
    for k, c in enumerate(truth["clusters"]):
        cluster[[key(m) for m in c["members"]]] = len(everything) + k
    for k, (a, b) in enumerate(truth["against_leaks"]):
        cluster[[key(a), key(b)]] = 2 * len(everything) + k
    kinds = ("duplicate", "near_duplicate", "leak")
    found = {
        tuple(sorted((index[r.path], index[r.other])))
        for r in df[df["issue"].isin(kinds)].itertuples()
    }
    paths = [str((data / p).resolve()) for p in names] + against_names
    rows = [("imgkit audit", *pair_scores(cluster, found), len(found))]
    for bits in (4, 8):
        ph = phash_pairs(paths, bits, n)
        rows.append((f"imagehash pHash <= {bits}", *pair_scores(cluster, ph), len(ph)))
    print_table(
        [(m, f"{r:.1%}", f"{p:.1%}", k) for m, r, p, k in rows],
        ("duplicate pairs", "recall", "precision", "pairs reported"),
    )
    comp = _components(len(everything), found)
    cross = [
        (i, j)
        for i, j in combinations(range(len(everything)), 2)
        if cluster[i] == cluster[j] and i < n and (j >= n or splits[i] != splits[j])
    ]
    leaks_found = sum(comp[i] == comp[j] for i, j in cross)
    print(f"\ncross-set leaks (data/against and across splits): {leaks_found} of {len(cross)}")
    _top_lists(df, truth)
    print("\nsummary.json issues:", json.dumps(res.summary["issues"]))


def _top_lists(df: pd.DataFrame, truth: dict) -> None:
    rows = []
    for kind, known in (("outlier", truth["foreign"]), ("label", truth["wrong"])):
        listed = [p.removeprefix("../set/src/") for p in df[df["issue"] == kind]["path"]]
        top = set(listed[: len(known)])
        rows.append(
            (kind, len(known), f"{len(top & set(known))}", f"{len(set(listed) & set(known))}",
             len(listed))
        )  # fmt: skip
    print()
    print_table(rows, ("kind", "known", "in top list (as long)", "in all reported", "reported"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-audit-"))
    try:
        quality(work)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
