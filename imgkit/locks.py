"""One writer per output folder: a lock beside it, naming the process that holds it.

``prep -o``, ``train -o``, ``tune -o`` and ``segment -o`` hold :func:`output_lock` while
they write, so a second imgkit process aimed at the same folder is refused at once
(with ``--overwrite`` too) instead of silently mixing or replacing the first one's work.

The lock is ``fcntl.flock`` on ``.<folder>.lock`` beside the folder (beside, not inside:
prep and train replace the folder as a whole). The kernel drops a flock when its
process dies, however it dies, so a ``kill -9`` never leaves the folder locked; the pid
written into the file then tells the next run that it is taking over from a process
that stopped without finishing, which it says on stderr. Why not the ``filelock``
package: it truncates the lock file when a second process opens it, which would erase
the holder's pid before the refusal could name it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from imgkit.errors import ImgkitError

try:  # POSIX; elsewhere there is no lock (and no claim of one)
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None


class FolderLockedError(ImgkitError):
    """Another process is writing the output folder."""


def lock_path(folder: str | os.PathLike) -> Path:
    """The lock file of ``folder``: ``.<name>.lock`` in its parent."""
    folder = Path(folder).absolute()
    return folder.parent / f".{folder.name}.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def _read_pid(fd: int) -> int | None:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 64).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


@contextlib.contextmanager
def output_lock(
    folder: str | os.PathLike, say: Callable[[str], None] | None = None
) -> Iterator[Path]:
    """Hold the lock on ``folder`` for the block.

    Raises:
        FolderLockedError: another live process holds it (the message names the pid).
    """
    path = lock_path(folder)
    if fcntl is None:  # pragma: no cover
        yield path
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder else "another process"
            raise FolderLockedError(
                f"{Path(folder)}: another imgkit process ({who}) is writing this folder; "
                "wait for it to finish or choose another -o"
            ) from None
        # The holder before us may have removed the file between our open and our
        # lock; then ours is a lock on a deleted file, and we start again.
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        previous = _read_pid(fd)
        if previous and previous != os.getpid() and say is not None:
            state = "no longer running" if not _alive(previous) else "not holding it"
            say(f"{Path(folder)}: took over a stale lock from pid {previous} ({state})")
        try:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as e:  # a full disk: say which output could not be written
            raise OSError(e.errno, e.strerror, str(folder)) from e
        yield path
    finally:
        # Remove the file while still holding the lock, so a waiting opener sees the
        # inode change and retries rather than locking a deleted file.
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)
