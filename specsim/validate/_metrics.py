"""The error measure of every validation table."""

from __future__ import annotations

import numpy as np

__all__ = ["mape"]


def mape(predicted, measured) -> float:
    """Mean absolute percentage error of ``predicted`` against ``measured``, %.

    Examples:
        >>> round(mape([110.0, 90.0], [100.0, 100.0]), 9)
        10.0
    """
    predicted = np.asarray(predicted, dtype=np.float64)
    measured = np.asarray(measured, dtype=np.float64)
    if predicted.size == 0:
        return float("nan")
    return float(100.0 * np.mean(np.abs(predicted / measured - 1.0)))
