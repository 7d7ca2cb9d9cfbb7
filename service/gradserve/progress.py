"""A plain progress bar on stderr for ``build``: one line per candidate network.

On a terminal the line is redrawn in place (at most ten times a second, so drawing never slows the
training it reports on); elsewhere (a log file, CI) only the finished line of each candidate is
written, so logs stay one line per network.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["ProgressBar"]

_WIDTH = 24
_REDRAW_S = 0.1


class ProgressBar:
    """``start(label)`` a candidate, ``update(epoch, val)`` after each epoch, ``finish(text)``."""

    def __init__(self, total: int, epochs: int, *, enabled: bool = True,
                 stream: TextIO | None = None):
        self.total = total
        self.epochs = epochs
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.live = enabled and getattr(self.stream, "isatty", lambda: False)()
        self.index = 0
        self.label = ""
        self._last = 0.0

    def start(self, label: str) -> None:
        self.index += 1
        self.label = label
        self._last = 0.0

    def update(self, epoch: int, validation: float) -> None:
        if not self.live:
            return
        now = time.monotonic()
        if now - self._last < _REDRAW_S:
            return
        self._last = now
        done = int(_WIDTH * min(epoch, self.epochs) / self.epochs)
        bar = "#" * done + "-" * (_WIDTH - done)
        self._write(f"\r{self._prefix()} [{bar}] {epoch}/{self.epochs} "
                    f"validation {validation:.3g}\x1b[K")

    def finish(self, text: str) -> None:
        if self.enabled:
            self._write(f"\r{self._prefix()} {text}\x1b[K\n" if self.live else
                        f"{self._prefix()} {text}\n")

    def _prefix(self) -> str:
        return f"[{self.index}/{self.total}] {self.label}"

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
