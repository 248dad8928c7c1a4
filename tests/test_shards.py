"""--shard I/N: the N shard outputs, concatenated in order, are the single run's output."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from tiny_bundles import save_classifier, save_segmenter

from imgkit.commands import cli
from imgkit.data.dataset_write import write_dataset
from imgkit.data.records import Record
from imgkit.infer.inputs import parse_shard, shard_bounds


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Two bundles, a folder of 10 images (one broken) and a dataset folder of 5."""
    root = tmp_path_factory.mktemp("shards")
    rng = np.random.default_rng(0)
    (root / "imgs").mkdir()
    for i in range(10):
        pixels = rng.integers(0, 256, size=(6 + i, 9, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "imgs" / f"{i:02d}.png")
    (root / "imgs" / "04.png").write_bytes(b"not a png")
    records = [
        Record(str(root / "imgs" / f"{i:02d}.png"), "lit" if i % 2 else "dim", split="test")
        for i in (0, 1, 2, 3, 5)
    ]
    write_dataset(root / "data", records, [])
    return {
        "root": root,
        "clf": save_classifier(root / "clf"),
        "seg": save_segmenter(root / "seg"),
    }


def _run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize("command", [["predict"], ["tta", "-n", "3"]])
def test_predict_and_tta_shards_concatenate_to_the_single_run(world, command):
    root, inputs = world["root"], [world["root"] / "data", world["root"] / "imgs"]
    _run(*command, world["clf"], *inputs, "-o", root / "all.csv", "--batch-size", "4")
    parts = []
    for i in (1, 2, 3):
        out = root / f"part{i}.csv"
        _run(*command, world["clf"], *inputs, "-o", out, "--batch-size", "4", "--shard", f"{i}/3")
        parts.append(out.read_text())
    whole = (root / "all.csv").read_text()
    assert "".join(parts) == whole
    assert whole.count("\n") == 1 + 5 + 9  # header, the dataset's 5, the folder's 9
    assert parts[1] and not parts[1].startswith("path,")


def test_segment_shards_write_the_single_runs_masks(world):
    root = world["root"]
    _run("segment", world["seg"], root / "imgs", "-o", root / "masks_all")
    for i in (1, 2, 3):
        _run("segment", world["seg"], root / "imgs", "-o", root / "masks", "--shard", f"{i}/3")
    whole = {p.name: p.read_bytes() for p in (root / "masks_all").iterdir()}
    sharded = {p.name: p.read_bytes() for p in (root / "masks").iterdir()}
    assert len(whole) == 9 and sharded == whole


def test_an_empty_shard_writes_only_what_its_place_needs(world, tmp_path):
    one = tmp_path / "one.png"
    Image.new("L", (8, 8), 200).save(one)
    _run("predict", world["clf"], one, "-o", tmp_path / "s2.csv", "--shard", "2/3")
    assert (tmp_path / "s2.csv").read_text() == ""
    _run("predict", world["clf"], one, "-o", tmp_path / "s3.csv", "--shard", "3/3")
    assert (tmp_path / "s3.csv").read_text().startswith(str(one))


def test_shard_arithmetic_and_bad_values():
    for total in range(0, 12):
        for n in range(1, 5):
            bounds = [shard_bounds(total, (i, n)) for i in range(1, n + 1)]
            assert bounds[0][0] == 0 and bounds[-1][1] == total
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
            assert max(b - a for a, b in bounds) - min(b - a for a, b in bounds) <= 1
    assert parse_shard("2/8") == (2, 8) and parse_shard(None) is None
    for bad in ("0/3", "4/3", "a/b", "3", "1/2/3"):
        with pytest.raises(Exception, match="--shard must be I/N"):
            parse_shard(bad)
    # Refused as bad input (exit 1, one line) before the missing bundle is even looked at.
    result = CliRunner().invoke(cli, ["predict", "nowhere", "x.png", "--shard", "5/4"])
    assert result.exit_code == 1, result.output
    assert result.output == "Error: --shard must be I/N with 1 <= I <= N, like 2/8 (got '5/4')\n"


def test_shard_bounds_by_hand():
    assert [shard_bounds(10, (i, 3)) for i in (1, 2, 3)] == [(0, 3), (3, 6), (6, 10)]
    assert shard_bounds(5, None) == (0, 5) and shard_bounds(0, (2, 2)) == (0, 0)
    assert all(type(x) is int for x in shard_bounds(7, (2, 3)))  # slice positions
    assert parse_shard(" 1/1 ") == (1, 1) and parse_shard("3/3") == (3, 3)


def test_a_shell_job_array_joined_with_cat(world, tmp_path):
    """Two shards as background jobs of one shell, joined with cat: the single run."""
    imgs = world["root"] / "imgs"
    script = (
        f"for i in 1 2; do {sys.executable} -m imgkit predict {world['clf']} {imgs} "
        f"--shard $i/2 -o {tmp_path}/p$i.csv 2>/dev/null & done; wait; "
        f"cat {tmp_path}/p1.csv {tmp_path}/p2.csv > {tmp_path}/joined.csv"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run(["bash", "-c", script], check=True, env=env, timeout=300)
    one = _run("predict", world["clf"], imgs).stdout
    assert (tmp_path / "joined.csv").read_text() == one
    assert len(one.splitlines()) == 10
