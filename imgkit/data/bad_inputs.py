"""Unreadable or unusable inputs: how many prep may meet (``--max-bad``) before it stops,
and their reasons grouped for a summary."""

from __future__ import annotations

from collections import Counter

from imgkit.data.records import Reject
from imgkit.errors import BadInputError, ImgkitError


def parse_max_bad(value: str | int | float | None) -> tuple[int | None, float | None]:
    """Read ``--max-bad``: a count of bad images (``10``) or a fraction (``0.05``).

    Returns:
        ``(count, None)``, ``(None, fraction)``, or ``(None, None)`` for no limit.

    Raises:
        BadInputError: neither a whole number nor a fraction below 1.
    """
    if value is None:
        return None, None
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        number = float("nan")
    if number >= 1 and number == int(number):
        return int(number), None
    if 0 <= number < 1:
        return (0, None) if number == 0 else (None, number)
    raise BadInputError(
        f"--max-bad must be a count (like 10) or a fraction below 1 (like 0.05), got {value!r}"
    )


def reason_kind(reason: str) -> str:
    """A reject reason without its details, for counting reasons in a summary."""
    return reason.split(" (", 1)[0]


class BadCounter:
    """Counts broken inputs and stops the run once ``--max-bad`` is exceeded."""

    def __init__(self, max_bad: str | int | float | None):
        self.raw = max_bad
        self.count, self.fraction = parse_max_bad(max_bad)
        self.total = 0
        self.bad: list[Reject] = []

    def allowed(self) -> float:
        if self.count is not None:
            return self.count
        if self.fraction is not None:
            return self.fraction * self.total
        return float("inf")

    def add(self, reject: Reject) -> None:
        self.bad.append(reject)
        if len(self.bad) > self.allowed():
            self.fail()

    def fail(self) -> None:
        kinds = Counter(reason_kind(r.reason) for r in self.bad).most_common(3)
        top = "; ".join(f"{k} ({n})" for k, n in kinds)
        examples = ", ".join(r.path for r in self.bad[:3])
        raise ImgkitError(
            f"stopped: {len(self.bad)} unreadable or unusable inputs of {self.total}, more than "
            f"--max-bad {self.raw}. Reasons: {top}. For example: {examples}"
        )
