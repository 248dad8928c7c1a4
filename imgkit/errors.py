"""Errors that reach the user as one clear line.

Every error the library raises on purpose is an :class:`ImgkitError`; the command layer
turns it into one line on stderr and an exit code (1, or 3 for a failed gate). A
traceback is shown only with ``--verbose``.
"""

from __future__ import annotations

import re

# Every character str.splitlines() breaks at (vertical tab, form feed, U+2028, ...):
# a quoted file name or CSV header may hold any of them.
_BREAK = r"\s*[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]+\s*"
_LINE_BREAKS = re.compile(_BREAK)
# pandas ends its messages with a line break, which a closing bracket often follows.
_BREAK_BEFORE_CLOSE = re.compile(_BREAK + r"(?=[)\]]|$)")


def one_line(text: str) -> str:
    """``text`` with its line breaks (and the spaces around them) turned into one space."""
    return _LINE_BREAKS.sub(" ", _BREAK_BEFORE_CLOSE.sub("", text)).strip()


class ImgkitError(Exception):
    """Something the user can fix: bad input, a missing file, a wrong option.

    A message is made one line here: many quote another library's error (pandas,
    tarfile, Pillow, Keras), which may run over several lines.
    """

    exit_code = 1

    def __init__(self, *args):
        if args and isinstance(args[0], str):
            args = (one_line(args[0]), *args[1:])
        super().__init__(*args)


class BadInputError(ImgkitError):
    """An input file or folder cannot be used (names the file and the problem)."""


class BadImageError(BadInputError):
    """One image cannot be read or used.

    Args:
        path: the image's path.
        reason: a short reason, as written to rejects.csv.
    """

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = one_line(reason)
        super().__init__(f"{self.path}: {reason}")


class BadDatasetError(ImgkitError):
    """A dataset folder is missing, incomplete or does not fit the task."""


class BadBundleError(ImgkitError):
    """A model bundle is missing, incomplete or made for another task."""


class UntrustedCodeError(BadBundleError):
    """A bundle's model carries Python code (a Lambda layer) and loading it was not trusted."""


class OutputExistsError(ImgkitError):
    """An output would overwrite something the user has (a bundle, a file)."""


class OfflineError(ImgkitError):
    """Something had to be downloaded and there is no network."""


class GateFailedError(ImgkitError):
    """A quality gate (``--fail-under``) was not met."""

    exit_code = 3
