"""--ray: batch inference on a local Ray (2 CPUs here) gives the local run's output."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import need_module
from PIL import Image
from tiny_bundles import save_classifier, save_segmenter

from imgkit.commands import cli


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    need_module("ray", "Ray is an extra: pip install -e '.[ray]'")
    import ray

    root = tmp_path_factory.mktemp("ray")
    rng = np.random.default_rng(1)
    (root / "imgs").mkdir()
    for i in range(11):
        pixels = rng.integers(0, 256, size=(5 + i, 7, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "imgs" / f"{i:02d}.png")
    for broken in ("02.png", "03.png"):  # a whole batch of 2 that cannot be read
        (root / "imgs" / broken).write_bytes(b"broken")
    yield {"root": root, "clf": save_classifier(root / "clf"), "seg": save_segmenter(root / "seg")}
    ray.shutdown()


def _run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def test_predict_on_ray_equals_the_local_run(world):
    clf, imgs = world["clf"], world["root"] / "imgs"
    local = _run("predict", clf, imgs, "--batch-size", "2").stdout
    on_ray = _run("predict", clf, imgs, "--batch-size", "2", "--workers", "2", "--ray")
    assert on_ray.stdout == local
    assert len(local.splitlines()) == 10  # header and 9 readable images
    assert "02.png" in on_ray.stderr and "03.png" in on_ray.stderr  # reported as locally


def test_segment_on_ray_writes_the_local_masks(world):
    root = world["root"]
    _run("segment", world["seg"], root / "imgs", "-o", root / "local")
    _run("segment", world["seg"], root / "imgs", "-o", root / "ray", "--workers", "1", "--ray")
    local = {p.name: p.read_bytes() for p in (root / "local").iterdir()}
    assert len(local) == 9
    assert {p.name: p.read_bytes() for p in (root / "ray").iterdir()} == local


def test_tta_on_ray_equals_the_local_run(world):
    clf, imgs = world["clf"], world["root"] / "imgs"
    args = ("tta", clf, imgs, "-n", "4", "--seed", "7", "--batch-size", "2")
    local = _run(*args).stdout
    on_ray = _run(*args, "--workers", "2", "--ray")
    assert on_ray.stdout == local
    assert len(local.splitlines()) == 10
    # The views did something (zooms change the mean brightness the model reads), so
    # an actor that ignored -n or --seed would not give the local CSV.
    assert local != _run("predict", clf, imgs, "--batch-size", "2").stdout
    assert local != _run("tta", clf, imgs, "-n", "4", "--seed", "8").stdout
    assert "02.png" in on_ray.stderr and "03.png" in on_ray.stderr


@pytest.mark.parametrize("command", ["predict", "tta", "segment"])
def test_without_ray_one_line_names_the_extra(command, tmp_path, monkeypatch):
    """Runs whether Ray is installed or not: `import ray` is made to fail."""
    bundle = (save_segmenter if command == "segment" else save_classifier)(tmp_path / "run")
    Image.new("L", (8, 8), 200).save(tmp_path / "x.png")
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    args = [command, str(bundle), str(tmp_path / "x.png"), "--ray"]
    if command == "segment":
        args += ["-o", str(tmp_path / "masks")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    assert result.output == (
        'Error: --ray needs Ray: pip install -e ".[ray]" (or pip install "imgkit[ray]")\n'
    )
