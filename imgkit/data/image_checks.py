"""Prep's one look at every image: each is opened and decoded once, in threads.

What cannot be decoded becomes a :class:`~imgkit.data.records.Reject` with the reason,
so that training later never meets an unreadable file.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from imgkit.data.bad_inputs import BadCounter
from imgkit.data.images import check_image
from imgkit.data.records import Record, Reject
from imgkit.data.sources.base import Progress
from imgkit.errors import BadImageError


def _collect(item, records, reasons, counter: BadCounter) -> None:
    i, future = item
    reasons[i] = future.result()
    if reasons[i] is not None:
        counter.add(Reject(records[i].path, reasons[i]))


def check_images(
    records: list[Record],
    workdir: Path,
    counter: BadCounter,
    progress: Progress | None,
    max_pixels: int,
) -> tuple[list[Record], list[Reject]]:
    """Open and decode every record's image once, in threads; split good from bad.

    Each bad image is added to ``counter`` as it is found, so a ``--max-bad`` stop comes
    before the remaining images are opened.
    """
    if not records:
        return [], []

    def check(record: Record) -> str | None:
        path = Path(record.path)
        try:
            check_image(path if path.is_absolute() else workdir / path, max_pixels)
        except BadImageError as e:
            return e.reason
        return None

    reasons: list[str | None] = [None] * len(records)
    workers = os.cpu_count() or 2
    # A bounded window of futures, collected oldest first: each image costs O(1) here
    # (waiting on the whole pending set per completion made prep quadratic), and the
    # queue never holds more than a few batches' worth of work.
    window = 8 * workers
    step = max(1, len(records) // 200)
    shown = 0  # progress takes increments

    def show(done: int) -> None:
        nonlocal shown
        if progress is not None and done > shown:
            progress("checking images", done - shown, len(records))
            shown = done

    pool = ThreadPoolExecutor(workers)
    try:
        inflight: deque[tuple[int, Future]] = deque()
        for i, record in enumerate(records):
            inflight.append((i, pool.submit(check, record)))
            if len(inflight) >= window:
                _collect(inflight.popleft(), records, reasons, counter)
            if (i + 1) % step == 0:
                show(i + 1 - len(inflight))
        while inflight:
            _collect(inflight.popleft(), records, reasons, counter)
        show(len(records))
    finally:
        # On a --max-bad stop, images not yet checked are not worth waiting for.
        pool.shutdown(wait=True, cancel_futures=True)
    good = [r for r, reason in zip(records, reasons, strict=True) if reason is None]
    bad = [Reject(r.path, reason) for r, reason in zip(records, reasons, strict=True) if reason]
    return good, bad
