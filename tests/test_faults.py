"""Nothing lost under faults: full disks, read-only folders, two writers, kill -9.

Full and read-only file systems are real: a tiny tmpfs mounted for the test (skipped,
with the reason, where mounting is not allowed; failed under CI=true). Interruptions
are real SIGKILLs sent to real ``imgkit`` processes at moments seen on disk (the lock
taken, the temporary output begun, part of it written), each checked to have landed
while the process ran. The models are tests/tiny_bundles.py's hand-made ones wherever
training is not what is tested, and the rerun after a kill runs in this process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import make_class_folder, need
from tiny_bundles import save_classifier, save_segmenter
from tiny_data import SIZE, make_dataset

from imgkit.commands import cli
from imgkit.locks import FolderLockedError, lock_path, output_lock

ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _mount_tmpfs(where: Path, options: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    need(done.returncode == 0, f"cannot mount a tmpfs here ({done.stderr.strip() or 'failed'})")


@pytest.fixture
def mounts():
    """``mount(path, options)``: a tmpfs for this test, unmounted afterwards."""
    made = []

    def mount(where: Path, options: str) -> Path:
        _mount_tmpfs(where, options)
        made.append(where)
        return where

    yield mount
    for where in reversed(made):
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _fill(folder: Path) -> None:
    """Use up every free byte of the file system under ``folder``."""
    with open(folder / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


def _one_line_error(result, path_text: str, problem: str) -> None:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    assert path_text in lines[-1] and problem in lines[-1], lines[-1]


def _finals(folder: Path) -> list[str]:
    """Files under final names (not the hidden temporary ones, not the filler)."""
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and not p.name.startswith(".") and p.name != "filler"
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A prepared dataset and a hand-made bundle (no training: not what is tested here)."""
    root = tmp_path_factory.mktemp("tiny")
    data = root / "data"
    make_dataset(data, n_train=32, n_val=8, n_test=8)
    return data, save_classifier(root / "run")


def test_full_disk_prep_predict_train_one_line_nothing_left(tmp_path, mounts, tiny):
    data, run = tiny
    photos = make_class_folder(tmp_path / "photos", per_class=40)
    full = mounts(tmp_path / "full", "size=256k")
    _fill(full)

    result = invoke("prep", photos, "-o", full / "data")
    _one_line_error(result, str(full / "data"), "no space left")
    result = invoke("predict", run, photos, "-o", full / "preds.csv")
    _one_line_error(result, str(full / "preds.csv"), "no space left")
    result = invoke("train", data, "-o", full / "run", "--model", "small-cnn", "--epochs", "1",
                    "--batch-size", "8", "--size", SIZE)  # fmt: skip
    _one_line_error(result, str(full / "run"), "no space left")
    assert _finals(full) == []


def test_read_only_and_file_in_the_way(tmp_path, mounts, tiny):
    _, run = tiny
    photos = make_class_folder(tmp_path / "photos", per_class=3)
    ro = mounts(tmp_path / "ro", "ro,size=64k")
    result = invoke("prep", photos, "-o", ro / "data")
    _one_line_error(result, str(ro), "read-only")
    result = invoke("predict", run, photos, "-o", ro / "preds.csv")
    _one_line_error(result, str(ro / "preds.csv"), "read-only")

    (tmp_path / "afile").write_text("mine")
    result = invoke("prep", photos, "-o", tmp_path / "afile" / "data")
    _one_line_error(result, "afile", "a file stands where a folder is needed")
    assert (tmp_path / "afile").read_text() == "mine"


def _hold_lock(folder: Path) -> subprocess.Popen:
    code = (
        "import sys, time\n"
        "from imgkit.locks import output_lock\n"
        f"with output_lock({str(folder)!r}):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_writer_is_refused_and_a_killed_holder_is_taken_over(tmp_path, tiny):
    data, _ = tiny
    out = tmp_path / "runs" / "x"
    holder = _hold_lock(out)
    try:
        result = invoke("train", data, "-o", out, "--model", "small-cnn", "--overwrite")
        assert result.exit_code == 1
        assert f"pid {holder.pid}" in result.stderr and str(out) in result.stderr
        result = invoke("prep", data, "-o", out)
        assert result.exit_code == 1 and f"pid {holder.pid}" in result.stderr
        assert not out.exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The kernel dropped the dead holder's lock; its pid is still in the file.
    assert lock_path(out).is_file()
    result = invoke("train", data, "-o", out, "--model", "small-cnn", "--epochs", "1",
                    "--batch-size", "8", "--size", SIZE)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"took over a stale lock from pid {holder.pid}" in result.stderr
    assert not lock_path(out).exists()  # released and removed at the end


def test_lock_in_one_process_refuses_a_second_open(tmp_path):
    with (
        output_lock(tmp_path / "a"),
        pytest.raises(FolderLockedError, match="another imgkit process"),
        output_lock(tmp_path / "a"),
    ):
        pass
    with output_lock(tmp_path / "a"):  # released: free again
        pass


def _imgkit(*args) -> list[str]:
    return [sys.executable, "-m", "imgkit", *[str(a) for a in args]]


def _kill_when(cmd: list[str], moment: Callable[[], bool], log: Path) -> None:
    """Run ``cmd``; SIGKILL it as soon as ``moment()`` holds, and check that it landed.

    Fails if the process ends first (the kill would test nothing) or did not die by
    the signal.
    """
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=ENV)
    try:
        deadline = time.monotonic() + 240
        while not moment():
            if proc.poll() is not None:
                raise AssertionError(f"ended ({proc.returncode}) first: {log.read_text()[-2000:]}")
            assert time.monotonic() < deadline, "the moment never came"
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL, log.read_text()[-2000:]
    finally:
        proc.kill()
        proc.wait()


def _parts(folder: Path, name: str) -> list[Path]:
    """The temporary names (``.NAME.*.part*``) fileio gives an output ``NAME`` beside it."""
    return sorted(folder.glob(f".{name}.*.part*"))


def _size_at_least(paths: Callable[[], list[Path]], size: int) -> Callable[[], bool]:
    def moment() -> bool:
        try:
            return any(p.stat().st_size >= size for p in paths())
        except FileNotFoundError:  # renamed or removed meanwhile
            return False

    return moment


def test_kill_9_prep_then_rerun_equals_one_run(tmp_path):
    photos = make_class_folder(tmp_path / "photos", per_class=150, size=(64, 48))
    ref = tmp_path / "ref"
    assert invoke("prep", photos, "-o", ref).exit_code == 0
    want = pd.read_csv(ref / "manifest.csv")
    moments = {
        # The lock file holds the pid: the rerun must say whose lock it took over.
        "the lock taken": lambda out: _size_at_least(lambda: [lock_path(out)], 1),
        "the dataset begun": lambda out: lambda: bool(_parts(out.parent, out.name)),
    }
    for name, moment in moments.items():
        out = tmp_path / name.replace(" ", "-")
        _kill_when(_imgkit("prep", photos, "-o", out), moment(out), tmp_path / f"{out.name}.log")
        # Killed mid-way: no dataset under the final name, and the lock left names the pid.
        assert not out.exists(), name
        result = invoke("prep", photos, "-o", out)
        assert result.exit_code == 0, result.output
        assert "took over a stale lock from pid" in result.stderr, result.stderr
        pd.testing.assert_frame_equal(pd.read_csv(out / "manifest.csv"), want)


def test_kill_9_predict_leaves_no_partial_csv(tmp_path, tiny):
    _, run = tiny
    photos = make_class_folder(tmp_path / "photos", per_class=400, size=(16, 16))
    ref = tmp_path / "ref.csv"
    assert invoke("predict", run, photos, "-o", ref).exit_code == 0
    size = ref.stat().st_size
    assert size > 64 * 1024  # half of it is several buffers (8 KiB) in
    for written in (0, size // 2):  # the output begun; half of it written
        out = tmp_path / f"p{written}.csv"
        moment = _size_at_least(lambda out=out: _parts(tmp_path, out.name), written)
        _kill_when(_imgkit("predict", run, photos, "-o", out), moment, tmp_path / "log")
        assert not out.exists() and _parts(tmp_path, out.name), written  # only the temporary
        assert invoke("predict", run, photos, "-o", out).exit_code == 0
        assert out.read_bytes() == ref.read_bytes()


def test_kill_9_tune_then_rerun_equals_one_run(tmp_path):
    data = tmp_path / "data"
    make_dataset(data, n_train=32, n_val=8, n_test=0)
    args = ["--model", "small-cnn", "--grid", "lr=1e-3,1e-2", "--epochs", "1",
            "--batch-size", "8", "--size", SIZE]  # fmt: skip
    ref = tmp_path / "ref"
    assert invoke("tune", data, "-o", ref, *args).exit_code == 0
    want = pd.read_csv(ref / "trials.csv").drop(columns=["seconds", "path"])
    for trial in (1, 2):  # killed in each trial's training, once its first epoch is saved
        out = tmp_path / f"t{trial}"
        moment = (out / f"trial-{trial:03d}" / "checkpoints" / "state.json").is_file
        _kill_when(_imgkit("tune", data, "-o", out, *args), moment, tmp_path / "log")
        assert not (out / "best").exists() or (out / "best" / "imgkit.json").is_file()
        if trial == 2:
            assert len(pd.read_csv(out / "trials.csv")) == 1
        result = invoke("tune", data, "-o", out, *args)
        assert result.exit_code == 0, result.output
        got = pd.read_csv(out / "trials.csv").drop(columns=["seconds", "path"])
        pd.testing.assert_frame_equal(got, want, rtol=1e-5)


def test_kill_9_segment_then_rerun_writes_the_same_masks(tmp_path):
    from seg_data import write_disc_pairs

    run = save_segmenter(tmp_path / "run")
    many, _ = write_disc_pairs(tmp_path / "many", n=300, size=(48, 48))
    ref = tmp_path / "ref"
    assert invoke("segment", run, many, "-o", ref).exit_code == 0
    want = {p.name: p.read_bytes() for p in ref.iterdir()}
    assert len(want) == 300
    for done in (1, 100):
        out = tmp_path / f"m{done}"

        def moment(out=out, done=done) -> bool:
            return out.is_dir() and len(_finals(out)) >= done

        _kill_when(_imgkit("segment", run, many, "-o", out), moment, tmp_path / "log")
        finals = _finals(out)
        assert done <= len(finals) < len(want)
        for name in finals:  # every mask under a final name is complete
            assert (out / name).read_bytes() == want[name], name
        assert invoke("segment", run, many, "-o", out).exit_code == 0
        got = {p.name: p.read_bytes() for p in out.iterdir() if not p.name.startswith(".")}
        assert got == want
