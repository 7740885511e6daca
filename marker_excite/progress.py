"""A tiny progress printer shared by all commands (no third-party dependency).

On a terminal it rewrites one status line per step (count, percentage, rate, ETA and any values such as
the loss). When the stream is not a terminal (logs, CI, notebooks) it prints a full line only every
``every`` percent, so log files stay short.

    with Progress(120, "train epoch 3/20", unit="batch") as bar:
        for batch in batches:
            ...
            bar.update(loss=0.41)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, TypeVar

T = TypeVar("T")


def format_duration(seconds: float) -> str:
    """``75.3`` -> ``'1:15'``; ``4000`` -> ``'1:06:40'``."""
    s = max(0, int(round(seconds)))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _format_value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class Progress:
    """Counts steps towards ``total`` and prints progress to ``stream`` (default: standard error).

    Args:
        total: number of steps, or None when unknown (no percentage / ETA then).
        desc: prefix of every line.
        unit: name of a step, shown after the count.
        every: on a non-terminal stream, print a line each time this many percent more are done
            (or every ``every`` steps when the total is unknown).
        min_interval: on a non-terminal stream, also wait at least this many seconds between two
            intermediate lines (the final line always prints), so fast loops log only their result
            while slow ones still show they are alive.
        stream: where to write; default ``sys.stderr``.
        enabled: False prints nothing (``--quiet``).
    """

    def __init__(
        self,
        total: int | None,
        desc: str = "",
        *,
        unit: str = "step",
        every: float = 10.0,
        min_interval: float = 0.0,
        stream: IO[str] | None = None,
        enabled: bool = True,
    ) -> None:
        self.total = None if total is None else max(0, int(total))
        self.desc = desc
        self.unit = unit
        self.every = float(every)
        self.min_interval = float(min_interval)
        self._last_emit = time.perf_counter()
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.count = 0
        self.values: dict[str, object] = {}
        self._start = time.perf_counter()
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._next_mark = self.every
        self._closed = False
        self._line_open = False

    # -- public API ------------------------------------------------------------------------------
    @property
    def units(self) -> str:
        """Plural of the unit name (``batch`` -> ``batches``, ``slice`` -> ``slices``)."""
        return self.unit + ("es" if self.unit.endswith(("s", "x", "ch", "sh")) else "s")

    def update(self, n: int = 1, **values: object) -> None:
        """Advance by ``n`` steps and remember ``values`` (shown as ``name=value``)."""
        self.count += n
        self.values.update(values)
        if not self.enabled:
            return
        if self._tty:
            self._emit(end="")
            self._line_open = True
        elif self._due() and time.perf_counter() - self._last_emit >= self.min_interval:
            self._emit(end="\n")

    def write(self, message: str) -> None:
        """Print a message on its own line (without breaking a terminal status line)."""
        if not self.enabled:
            return
        if self._line_open:
            self.stream.write("\n")
            self._line_open = False
        self.stream.write(message + "\n")
        self.stream.flush()

    def close(self, **values: object) -> None:
        """Print the final line (always, unless disabled) and stop."""
        if self._closed:
            return
        self._closed = True
        self.values.update(values)
        if self.enabled:
            self._emit(end="\n", final=True)
            self._line_open = False

    @property
    def elapsed(self) -> float:
        """Seconds since the printer was created."""
        return time.perf_counter() - self._start

    def line(self, final: bool = False) -> str:
        """The current status line (without line ending)."""
        elapsed = self.elapsed
        rate = self.count / elapsed if elapsed > 0 else 0.0
        parts = [self.desc] if self.desc else []
        if self.total:
            pct = 100.0 * self.count / self.total
            parts.append(f"{self.count}/{self.total} {self.units} ({pct:3.0f}%)")
        else:
            parts.append(f"{self.count} {self.units}")
        timing = format_duration(elapsed)
        if not final and self.total and 0 < self.count < self.total and rate > 0:
            timing += f" < ETA {format_duration((self.total - self.count) / rate)}"
        parts.append(f"[{timing}, {rate:.3g} {self.units}/s]")
        parts.extend(f"{k}={_format_value(v)}" for k, v in self.values.items())
        return " ".join(parts)

    # -- helpers ---------------------------------------------------------------------------------
    def _due(self) -> bool:
        if self.total:
            pct = 100.0 * self.count / self.total
            if pct + 1e-9 >= self._next_mark and self.count < self.total:
                while self._next_mark <= pct + 1e-9:
                    self._next_mark += self.every
                return True
            return False
        return self.every > 0 and self.count % max(1, int(self.every)) == 0

    def _emit(self, end: str, final: bool = False) -> None:
        self._last_emit = time.perf_counter()
        text = self.line(final=final)
        if self._tty:
            text = "\r" + text + "\x1b[K"
        self.stream.write(text + end)
        self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif self._line_open and self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def track(items: Iterable[T], total: int | None = None, desc: str = "", **kwargs) -> Iterator[T]:
    """Iterate over ``items`` with a :class:`Progress` (total from ``len(items)`` when available)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(total, desc, **kwargs) as bar:
        for item in items:
            yield item
            bar.update()
