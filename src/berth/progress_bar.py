"""A progress bar on stderr for long commands: redrawn in place on a terminal, one line when
done elsewhere (CI logs stay readable)."""

from __future__ import annotations

import sys
from collections.abc import Callable


def bar(label: str, total: int, unit: str, quiet: bool = False) -> Callable[[int], None]:
    width, shown, live = 30, [-1], sys.stderr.isatty()

    def update(done: int) -> None:
        step = done * width // max(total, 1)
        if quiet or (done != total and (not live or step == shown[0])):
            return
        shown[0] = step
        drawn = "#" * step + "." * (width - step)
        end = "\n" if done == total else ""
        print(
            f"\r  {label:<13} [{drawn}] {done}/{total} {unit}", end=end, file=sys.stderr, flush=True
        )

    return update
