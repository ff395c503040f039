"""A progress bar that keeps its clock running during long device calls (no JAX here).

tqdm redraws only when it is updated; a sweep whose chunks each take a minute (or one
whose first chunk compiles for a minute) would show a frozen or no bar. `live_bar` adds a
ticker thread that refreshes the bar, so its elapsed time moves between updates. Like
tqdm with ``disable=None``, it stays quiet when stderr is not a terminal.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator

__all__ = ["live_bar"]


@contextlib.contextmanager
def live_bar(show: bool | None = None, delay_s: float = 0.5, **tqdm_kwargs) -> Iterator:
    """A tqdm bar on stderr, refreshed every quarter second once ``delay_s`` has passed.

    Args:
        show: ``True`` always, ``False`` never, ``None`` only on a terminal.
        delay_s: nothing is drawn before this (quick calls stay silent).
        **tqdm_kwargs: ``total``, ``unit``, ... for ``tqdm``.
    """
    from tqdm import tqdm

    bar = tqdm(
        file=sys.stderr,
        disable=None if show is None else not show,
        delay=delay_s if show is None else 0.0,
        leave=False,
        **tqdm_kwargs,
    )
    stop = threading.Event()

    def tick() -> None:
        if stop.wait(delay_s):
            return
        while not stop.wait(0.25):
            bar.refresh()

    ticker = threading.Thread(target=tick, daemon=True)
    if not bar.disable:
        ticker.start()
    try:
        yield bar
    finally:
        stop.set()
        if ticker.is_alive():
            ticker.join()
        bar.close()
