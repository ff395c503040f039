"""A stage bar on stderr for commands whose steps are single long (jitted) calls."""

from __future__ import annotations

import sys
import threading


class StageProgress:
    """Shows ``stages`` on a terminal once work has taken more than a moment.

    Args:
        stages: a label per stage, shown while that stage runs.
        enabled: ``False`` hides the bar (e.g. with ``--json``); otherwise tqdm shows it
            only when stderr is a terminal.
    """

    def __init__(self, stages: list[str], enabled: bool = True):
        from tqdm import tqdm

        self._stages = stages
        self._bar = tqdm(
            total=len(stages),
            desc=stages[0],
            file=sys.stderr,
            disable=None if enabled else True,
            delay=0.5,
            leave=False,
            bar_format="{desc} {bar} {n_fmt}/{total_fmt} [{elapsed}]",
        )
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        # tqdm redraws only on updates; long jitted calls need a clock of their own.
        if self._stop.wait(0.5):
            return
        while not self._stop.wait(0.25):
            self._bar.refresh()

    def advance(self) -> None:
        """Marks the current stage done and shows the next one's label."""
        self._bar.update(1)
        if self._bar.n < len(self._stages):
            self._bar.set_description_str(self._stages[self._bar.n])

    def close(self) -> None:
        """Stops the clock and removes the bar."""
        self._stop.set()
        self._ticker.join()
        self._bar.close()
