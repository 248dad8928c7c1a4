"""Errors that reach the user as one clear line.

Every error the library raises on purpose is an :class:`ImgkitError`; the command layer
turns it into one line on stderr and an exit code (1, or 3 for a failed gate). A
traceback is shown only with ``--verbose``.
"""

from __future__ import annotations


class ImgkitError(Exception):
    """Something the user can fix: bad input, a missing file, a wrong option."""

    exit_code = 1


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
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class BadDatasetError(ImgkitError):
    """A dataset folder is missing, incomplete or does not fit the task."""


class BadBundleError(ImgkitError):
    """A model bundle is missing, incomplete or made for another task."""


class OutputExistsError(ImgkitError):
    """An output would overwrite something the user has (a bundle, a file)."""


class OfflineError(ImgkitError):
    """Something had to be downloaded and there is no network."""


class GateFailedError(ImgkitError):
    """A quality gate (``--fail-under``) was not met."""

    exit_code = 3
