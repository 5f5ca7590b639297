"""Collect a library's per-file warnings while reading and report each kind once.

pydicom warns (``warnings.warn``) and logs (logger ``pydicom``) once per file for,
e.g., an invalid UI value: 167 identical lines for one series. ``collect`` gathers
both for the duration of a read; ``summary`` turns them into one line per kind with a
count and one example.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

_VALUE = re.compile(r"'[^']*'|\"[^\"]*\"|\b\d[\d.]*\b")


@dataclass
class Collected:
    """Messages gathered while reading, in arrival order."""

    messages: list[str] = field(default_factory=list)

    def summary(self, library: str = "pydicom") -> list[str]:
        """One line per kind of message (values masked), with its count and an example."""
        kinds: Counter[str] = Counter()
        example: dict[str, str] = {}
        for message in self.messages:
            kind = _VALUE.sub("…", message.split(" Please see")[0])
            kinds[kind] += 1
            example.setdefault(kind, message.split(" Please see")[0])
        return [
            f"{library} reported {count} time(s) while reading: {example[kind]}"
            + (" (and the same for other values)" if count > 1 else "")
            for kind, count in kinds.items()
        ]


class _Swallow(logging.Filter):
    def __init__(self, sink: Collected) -> None:
        super().__init__()
        self.sink = sink

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            self.sink.messages.append(record.getMessage())
            return False
        return True


@contextmanager
def collect(logger_name: str = "pydicom") -> Iterator[Collected]:
    """Gather ``warnings`` and the named logger's warnings while the block runs.

    Both are restored on exit. A warning and a log record with the same text (pydicom's
    ``warn_and_log``) count once. Warnings raised by other code are passed on unchanged.
    """
    sink = Collected()
    library_logger = logging.getLogger(logger_name)
    swallow = _Swallow(sink)
    library_logger.addFilter(swallow)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield sink
    finally:
        library_logger.removeFilter(swallow)
    logged = list(sink.messages)
    sink.messages.clear()
    pending = Counter(logged)
    package = logger_name.split(".")[0]
    for item in caught:
        text = str(item.message)
        if pending[text]:  # warned and logged by the library (pydicom's warn_and_log)
            pending[text] -= 1
        elif package not in Path(item.filename).parts:  # not the library's: pass it on
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)
            continue
        sink.messages.append(text)
    for text, count in pending.items():
        sink.messages.extend([text] * count)
