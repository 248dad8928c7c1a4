"""imgkit audit --against: the two sets are joined on disk, not in memory.

At 277,524 images the data set's thumbnails and embeddings are 2.5 GB; joining them
with an ``--against`` set by concatenating in memory held all of both. The join
copies them, a chunk at a time, into memory maps; these tests count what it
allocates (tracemalloc, as the fold-memory test does) and check the copy is exact.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
from conftest import need_module
from test_audit import base_images, make_data, texture

from imgkit.data.dataset import Dataset
from imgkit.evaluate.audit import join as join_module
from imgkit.evaluate.audit import run
from imgkit.evaluate.audit.inputs import against_images, data_images
from imgkit.evaluate.audit.join import join

need_module("faiss", "needs the audit extra (faiss-cpu)")
need_module("cv2", "needs the audit extra (opencv-python-headless)")


def quiet(message: str) -> None:
    pass


class PixelEmbedder:
    """A real, deterministic embedding without a network: a 16x16 grey image, unit length."""

    name = "pixels16"
    spec = ((16, 16), 1, "stretch")

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        x = pixels.reshape(len(pixels), -1).astype(np.float32) - 128.0
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def sets(tmp_path, n_data: int, n_against: int, broken: int = 0):
    """A data set of ``n_data`` images and an --against folder of ``n_against`` (+ broken)."""
    imgs = {}
    for k in range(n_data):
        imgs[f"i{k}.png"] = (texture(k, side=24), "ab"[k % 2], "train")
    d = data_images(Dataset.load(make_data(tmp_path / "data", imgs)))
    folder = tmp_path / "against"
    folder.mkdir()
    for k in range(n_against):
        texture(10_000 + k, side=24).save(folder / f"t{k}.png")
    for k in range(broken):
        (folder / f"broken{k}.png").write_bytes(b"not a png")
    return d, against_images(folder)


def test_the_join_allocates_next_to_nothing_and_copies_exactly(tmp_path):
    d, o = sets(tmp_path, 300, 300)
    emb = PixelEmbedder()
    scratch = tmp_path / "scratch"
    sd, vd = run._scan(d, emb, quiet, scratch / "data")  # into the data set's cache
    so, vo = run._scan(o, emb, quiet, scratch / "against")  # a folder: into scratch files
    assert isinstance(so.thumbs, np.memmap) and isinstance(vo, np.memmap)
    tracemalloc.start()
    names, paths, splits, scan, vectors = join(d, o, sd, so, vd, vo, scratch)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    joined = scan.thumbs.nbytes + vectors.nbytes  # 600 x (4 KB + 1 KB)
    assert peak < joined / 20, (peak, joined)
    assert isinstance(scan.thumbs, np.memmap) and isinstance(vectors, np.memmap)
    np.testing.assert_array_equal(scan.thumbs, np.concatenate([sd.thumbs, so.thumbs]))
    np.testing.assert_array_equal(vectors, np.concatenate([vd, vo]))
    np.testing.assert_array_equal(scan.sha, np.concatenate([sd.sha, so.sha]))
    assert scan.ok.all() and names == d.names + o.names and splits[-1] == "against"
    assert paths == d.paths + o.paths


def test_the_join_copies_in_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(join_module, "COPY_ROWS", 7)  # parts not a multiple of the chunk
    d, o = sets(tmp_path, 20, 9, broken=2)
    emb = PixelEmbedder()
    sd, vd = run._scan(d, emb, quiet, tmp_path / "s" / "data")
    so, vo = run._scan(o, emb, quiet, tmp_path / "s" / "against")
    _, _, _, scan, vectors = join(d, o, sd, so, vd, vo, tmp_path / "s")
    np.testing.assert_array_equal(scan.thumbs, np.concatenate([sd.thumbs, so.thumbs]))
    np.testing.assert_array_equal(vectors, np.concatenate([vd, vo]))
    # The broken ones (listed first): unread, not lost.
    assert np.flatnonzero(~scan.ok).tolist() == [20, 21] and scan.reasons[20]


def test_an_unreadable_against_set_keeps_the_embeddings(tmp_path):
    # Its vectors are a 1-wide zero array; the data set's still get searched.
    d, o = sets(tmp_path, 12, 0, broken=2)
    emb = PixelEmbedder()
    sd, vd = run._scan(d, emb, quiet, tmp_path / "s" / "data")
    so, vo = run._scan(o, emb, quiet, tmp_path / "s" / "against")
    assert vo.shape == (2, 1)
    _, _, _, scan, vectors = join(d, o, sd, so, vd, vo, tmp_path / "s")
    assert vectors.shape == (14, 256) and not vectors[12:].any()
    np.testing.assert_array_equal(vectors[:12], vd)
    assert scan.ok.sum() == 12


def test_an_against_audit_leaves_no_scratch_files(tmp_path):
    data = make_data(tmp_path / "data", base_images(5))
    other = tmp_path / "other"
    other.mkdir()
    texture(3).save(other / "copy.jpg", quality=85)  # a copy of a3
    res = run.run_audit(data, tmp_path / "out", against=other, features="none")
    leaks = res.issues[res.issues["issue"] == "leak"]
    assert list(leaks["path"]) == ["images/a3.png"]
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]
