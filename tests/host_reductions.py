"""Reference reductions of a full sweep frame on the host (pandas/NumPy), for tests.

Each returns the frame a device-side reduction must equal point for point: groups are
the points of the axes not reduced, in grid order.
"""

import numpy as np
import pandas as pd

from specsim._sweep import AXES


def _groups(frame: pd.DataFrame, over):
    keys = [a for a in AXES if a in frame.columns and a not in over]
    if not keys:
        return [((), frame)]
    return list(frame.groupby(keys, observed=True, sort=False))


def top_k(frame, over, k, objective="tokens_per_s", maximize=True, fields=None):
    """The k best rows of every group (stable: ties keep grid order), best first; feasible
    points before infeasible ones where the frame says which are which."""
    parts = []
    for _, group in _groups(frame, over):
        values = group[objective].to_numpy()
        key = -values if maximize else values
        if "feasibility" in group.columns:  # feasible points rank first, as on the device
            infeasible = group["feasibility"].astype(str).to_numpy() != "ok"
            order = np.lexsort((key, infeasible))[:k]  # stable; last key is the primary one
        else:
            order = np.argsort(key, kind="stable")[:k]
        rows = group.iloc[order].copy()
        if k > 1:
            rows.insert(len([c for c in frame.columns if c in AXES]), "rank", np.arange(1, k + 1))
        parts.append(rows)
    columns = [c for c in frame.columns if c in AXES] + (["rank"] if k > 1 else [])
    columns += list(fields if fields is not None else [c for c in frame.columns if c not in AXES])
    return pd.concat(parts, ignore_index=True)[columns]


def quantiles(frame, over, q, fields):
    """Quantiles of each field over every group (NumPy's linear interpolation)."""
    keys = [a for a in AXES if a in frame.columns and a not in over]
    rows = []
    for key, group in _groups(frame, over):
        key = key if isinstance(key, tuple) else (key,)
        for i, level in enumerate(q):
            row = dict(zip(keys, key, strict=True))
            row["quantile"] = level
            for name in fields:
                row[name] = np.quantile(group[name].to_numpy(), q)[i]
            rows.append(row)
    return pd.DataFrame(rows)


def histogram(frame, over, edges, field):
    """``numpy.histogram`` counts of ``field`` over every group, edges rounded to float32."""
    edges = np.asarray(np.asarray(edges, np.float32), np.float64)
    keys = [a for a in AXES if a in frame.columns and a not in over]
    rows = []
    for key, group in _groups(frame, over):
        key = key if isinstance(key, tuple) else (key,)
        counts, _ = np.histogram(group[field].to_numpy().astype(np.float64), bins=edges)
        for i, count in enumerate(counts):
            row = dict(zip(keys, key, strict=True))
            row.update(bin_start=edges[i], bin_stop=edges[i + 1], count=int(count))
            rows.append(row)
    return pd.DataFrame(rows)
