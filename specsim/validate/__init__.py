"""Validation: how far specsim's predictions are from reality.

Two parts, each a table with a per-row and a mean absolute percentage error (MAPE):

* **local**: real networks on this device (``specsim.measure``). A grid of forward
  passes (model sizes, batch, new tokens, context) is timed; `specsim.calibrate` fits
  the local `HardwareSpec` on one half and predicts the other half. Then real
  speculative decoding runs (layer-skipping drafts whose acceptance spans about 0.3
  to 0.9) are timed, and ``specsim.throughput`` predicts their tokens/s from the
  calibrated spec and the *measured* acceptance rate.
* **published**: measurements from papers and repositories (``specsim/data/
  published.toml``, each with its source), predicted with the catalogue's default
  efficiencies; nothing is fitted to them.

On a CPU, measurements run XLA single-threaded (a one-core "device" whose steps do
not depend on what else holds the other cores), and the grid is swept in several
interleaved rounds so that slow drifts of the machine touch every point alike.
Timings are compared through one statistic of their repeated samples, the same for
step times and for speculative iterations: by default the lower decile (``p10``),
an estimate of the time without interference from other programs, which only ever
slows a run down (the simulator models the machine, not its other tenants); errors
against the medians are reported alongside. ``specsim validate`` is a command, not a
unit test: the full grid takes a few minutes on a 2-core CPU.

Modules: ``_local`` (this device), ``_published`` (papers and repositories),
``_report`` (Markdown tables and the JSON summary), ``_metrics`` (the error measure).
"""

from .._local_calibration import STATISTICS as STATISTICS
from .._local_calibration import split_train_test as split_train_test
from ._local import LocalValidation as LocalValidation
from ._local import validate_local as validate_local
from ._metrics import mape as mape
from ._published import load_published as load_published
from ._published import predict_published as predict_published
from ._published import published_mape_by_group as published_mape_by_group
from ._published import validate_published as validate_published
from ._report import markdown_table as markdown_table
from ._report import report_local as report_local
from ._report import report_published as report_published

__all__ = [
    "STATISTICS",
    "LocalValidation",
    "load_published",
    "mape",
    "markdown_table",
    "predict_published",
    "published_mape_by_group",
    "report_local",
    "report_published",
    "split_train_test",
    "validate_local",
    "validate_published",
]
