"""Output files and early checks (issue 11, points 2-5): atomic writes, --overwrite, two
writers, Ctrl-C, bad paths found before any work, and huge grids refused at once."""

import math
import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from specsim import _atomic
from specsim._limits import HOST_MEMORY_FRACTION, physical_memory_bytes
from specsim.cli import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, main

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def run(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def _env() -> dict:
    pythonpath = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": pythonpath, "JAX_PLATFORMS": "cpu"}


def _specsim(*argv, **kwargs) -> subprocess.Popen:
    # A child inherits an ignored SIGINT (and only that: handlers reset at exec). Some test
    # run earlier in the same xdist worker may leave SIGINT ignored, and a command started
    # from there never sees Ctrl-C; start it as a shell would, with SIGINT handled.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "specsim.cli", *map(str, argv)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,
            env=_env(),
            **kwargs,
        )
    finally:
        signal.signal(signal.SIGINT, previous)


def _leftovers(folder: pathlib.Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# --------------------------------------------------------------------------- atomic_output


def test_a_failed_block_leaves_nothing(tmp_path):
    target = tmp_path / "table.csv"
    with pytest.raises(RuntimeError), _atomic.atomic_output(target) as temp:
        pathlib.Path(temp).write_text("half a ta")
        raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_block_leaves_nothing(tmp_path):
    target = tmp_path / "table.csv"
    with pytest.raises(KeyboardInterrupt), _atomic.atomic_output(target) as temp:
        pathlib.Path(temp).write_text("half a ta")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_an_existing_file_needs_overwrite(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("precious")
    with pytest.raises(ValueError, match="file exists; valid: a new name, or overwrite=True"):
        _atomic.check_output_path(target)
    with _atomic.atomic_output(target, overwrite=True) as temp:
        pathlib.Path(temp).write_text("new")
    assert target.read_text() == "new" and _leftovers(tmp_path) == []


@pytest.mark.parametrize("overwrite", [False, True])
def test_two_writers_cannot_both_claim_success(tmp_path, overwrite):
    """Issue 11, point 2: the second writer to finish fails instead of clobbering."""
    target = tmp_path / "table.csv"
    with pytest.raises(ValueError, match=r"another run wrote|file exists"):
        with _atomic.atomic_output(target, overwrite=overwrite) as first:
            pathlib.Path(first).write_text("first\n")
            with _atomic.atomic_output(target, overwrite=overwrite) as second:
                pathlib.Path(second).write_text("second\n")
    assert target.read_text() == "second\n"  # the one that claimed success
    assert _leftovers(tmp_path) == []


# --------------------------------------------------------------------------- point 2: two sweeps


GRID = ["--batch", "1:400", "--gamma", "0:9", "--columns", "tokens_per_s", "--no-progress"]


@pytest.mark.slow
@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_two_sweeps_writing_one_file_at_once(tmp_path, overwrite):
    """Issue 11, point 2: two sweeps with the same --out both reported success and left an
    interleaved CSV. Now one succeeds, the other exits 2 with one line, and the file is one
    run's complete table."""
    out = tmp_path / "grid.csv"
    runs = [_specsim("sweep", *GRID, "--out", out, *overwrite) for _ in range(2)]
    results = [(p.wait(timeout=600), *p.communicate()) for p in runs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, EXIT_USAGE], results
    (err,) = [err for code, _, err in results if code == EXIT_USAGE]
    assert "specsim sweep: --out" in err and ("another run" in err or "file exists" in err)
    table = pd.read_csv(out)
    assert len(table) == 400 * 10 and list(table.columns)[-3:] == ["alpha", "gamma", "tokens_per_s"]
    assert _leftovers(tmp_path) == []


def test_an_existing_out_file_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    out = tmp_path / "grid.csv"
    out.write_text("precious\n")
    import specsim

    monkeypatch.setattr(specsim, "sweep", _must_not_run)
    code, _, err = run(capsys, "sweep", *GRID, "--out", out)
    assert code == EXIT_USAGE
    assert err.strip() == (
        f"specsim sweep: --out {out}: file exists; valid: a new name, or --overwrite to replace it"
    )
    assert out.read_text() == "precious\n"


def _must_not_run(*args, **kwargs):
    raise AssertionError("work started before the inputs were checked")


# --------------------------------------------------------------------------- point 3: Ctrl-C


@pytest.mark.slow
def test_interrupting_a_sweep_never_leaves_a_file(tmp_path):
    """Issue 11, point 3: Ctrl-C left a partial CSV/Parquet that read as complete and
    printed a traceback. Ten interrupts at random moments (start-up, compilation, chunks
    being written, the final rename): either the run finished (exit 0, a complete file)
    or nothing is under the output name, with one line on stderr."""
    rng = random.Random(11)
    argv = ["--batch", "1:3000", "--gamma", "0:15", "--chunk-size", "4096"]
    argv += ["--columns", "tokens_per_s", "--no-progress"]
    # Uninterrupted runs set the time scale: interrupts then fall in (0.05, 1.1) of it, so
    # on a fast or a loaded machine alike most of them land inside the run. The faster of
    # two, and any trial that finishes before its interrupt shrinks it further: under a
    # varying load (another xdist worker compiling) a first run 4x slower than the next
    # ones once sent every interrupt after the end or into the interpreter's start-up.
    run_s = math.inf
    for _ in range(2):
        started = time.perf_counter()
        whole = _specsim("sweep", *argv, "--out", tmp_path / "whole.csv")
        whole.communicate(timeout=600)
        assert whole.returncode == 0
        run_s = min(run_s, time.perf_counter() - started)
        (tmp_path / "whole.csv").unlink()
    interrupted = 0
    for trial in range(10):
        suffix = ".csv" if trial % 2 else ".parquet"
        out = tmp_path / f"grid{trial}{suffix}"
        started = time.perf_counter()
        process = _specsim("sweep", *argv, "--out", out)
        time.sleep(rng.uniform(0.05, 1.1) * run_s)
        if process.poll() is not None:  # finished before its interrupt
            run_s = min(run_s, time.perf_counter() - started)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=600)
        code = process.returncode
        if code == 0:
            table = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
            assert len(table) == 3000 * 16
        else:
            assert not out.exists(), (trial, code, err)
            # Before specsim's code runs (interpreter start-up) Python dies of the signal.
            assert code in (EXIT_INTERRUPTED, -signal.SIGINT), (code, err)
            if code == EXIT_INTERRUPTED:
                interrupted += 1
                assert err.strip().splitlines()[-1] == (
                    "specsim sweep: interrupted; no output written"
                )
                assert "Traceback" not in err
        assert _leftovers(tmp_path) == []
    assert interrupted >= 3  # most trials really interrupted the sweep itself


@pytest.mark.slow  # a whole sweep command, > 3 s CPU
def test_a_failure_while_writing_exits_1_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    from specsim import _sweep_result

    def full_disk(self, frame):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_sweep_result.FileSink, "write", full_disk)
    out = tmp_path / "grid.parquet"
    code, _, err = run(capsys, "sweep", "--batch", "1,2", "--out", out, "--no-progress")
    assert code == EXIT_FAILURE
    assert err.splitlines()[-1] == (
        "specsim sweep: failed: OSError: [Errno 28] No space left on device"
    )
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- point 4: huge grids


def test_a_grid_1000x_beyond_memory_is_refused_at_once():
    """Issue 11, point 4: ``--batch 1:1000000000 --gamma 0:10`` allocated gigabytes before
    the memory guard ran. The points are now counted from the text: refused in well under
    2 s and 300 MB (figures of this machine in the assertion message)."""
    physical = physical_memory_bytes()
    code = (
        "import time\n"
        "start = time.perf_counter()\n"
        "from specsim.cli import main\n"
        "code = main(['sweep', '--batch', '1:1000000000', '--gamma', '0:1000'])\n"
        "seconds = time.perf_counter() - start\n"
        # VmHWM: this process's peak resident memory (ru_maxrss would include the
        # parent's, inherited across fork and exec).
        "status = open('/proc/self/status').read().split('VmHWM:')[1]\n"
        "peak_mb = int(status.split()[0]) / 1024\n"
        "print(code, seconds, peak_mb)\n"
    )
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120
    )
    wall = time.perf_counter() - started
    exit_code, seconds, peak_mb = result.stdout.split()
    assert int(exit_code) == EXIT_USAGE, result.stderr
    message = result.stderr.strip()
    assert message.count("\n") == 0 and message.startswith("specsim sweep: grid of 1,001,0")
    assert "in memory, more than 80% of this machine's" in message
    assert "--out FILE" in message and "--best-over" in message
    # 1e12 rows of > 100 bytes: at least 1000 times what this machine may hold.
    rows = 1_000_000_000 * 1001
    assert rows * 100 > 1000 * HOST_MEMORY_FRACTION * physical
    assert float(seconds) < 2.0 and float(peak_mb) < 300, (seconds, peak_mb, wall)


def test_a_grid_beyond_the_free_disk_is_refused(tmp_path, capsys):
    code, _, err = run(
        capsys, "sweep", "--batch", "1:1000000000", "--gamma", "0:1000", "--out", tmp_path / "g.csv"
    )
    assert code == EXIT_USAGE
    assert "free there; valid:" in err and err.count("\n") == 1


def test_a_large_grid_needs_allow_large(tmp_path, capsys, monkeypatch):
    """Issue 12, point 4: the point count and estimated size are printed first, and a grid
    beyond the documented limit needs --allow-large."""
    import specsim

    real = specsim.sweep
    checks_only = lambda *a, check_only=False, **k: (
        real(*a, check_only=True, **k) if check_only else _must_not_run()
    )
    monkeypatch.setattr(specsim, "sweep", checks_only)
    argv = ["sweep", "--batch", "1:20000", "--gamma", "0:999", "--out", tmp_path / "g.parquet"]
    code, _, err = run(capsys, *argv)
    assert code == EXIT_USAGE
    assert err.strip() == (
        "specsim sweep: grid of 20,000,000 points, about 2.4 GiB of Parquet: larger than "
        "10,000,000 points or 1 GiB; valid: a smaller grid, or --allow-large to run it"
    )
    code, _, err = run(capsys, *argv, "--allow-large")  # reaches the (stubbed) sweep
    assert code == EXIT_FAILURE and "work started" in err
    assert err.startswith("specsim sweep: 20,000,000 points, about 2.4 GiB of Parquet\n")


@pytest.mark.slow  # a whole sweep command, > 3 s CPU
def test_point_count_and_size_are_printed_before_the_sweep(tmp_path, capsys):
    out = tmp_path / "g.csv"
    code, _, err = run(capsys, "sweep", "--batch", "1:4", "--gamma", "0:2", "--out", out)
    assert code == 0
    first = err.splitlines()[0]
    assert first.startswith("specsim sweep: 12 points, about ") and first.endswith("of CSV")
    estimate = first.split("about ")[1].split(" of")[0]
    actual = out.stat().st_size
    value, unit = estimate.split()
    estimated = float(value) * {"bytes": 1, "KiB": 2**10, "MiB": 2**20}[unit]
    assert 0.5 < estimated / actual < 2.0, (estimate, actual)


# --------------------------------------------------------------------------- point 5: bad paths


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["sweep", "--out", "{tmp}/missing/x.csv"], "--out {tmp}/missing/x.csv: folder"),
        (["sweep", "--plot", "{tmp}/missing/x.png", "--batch", "1,2", "--gamma", "0,1"], "--plot"),
        (["evaluate", "--plot", "{tmp}/missing/x.png"], "--plot {tmp}/missing/x.png: folder"),
        (["evaluate", "--plot", "{tmp}/a_file/x.png"], "does not exist"),
        (["calibrate", "--output", "{tmp}/a_file/x.toml"], "--output {tmp}/a_file/x.toml: folder"),
        (["calibrate", "--output", "{tmp}/x.json"], "unknown file type; valid: a name ending"),
        (["calibrate", "--output", "{tmp}/taken.toml"], "file exists; valid: a new name, or --o"),
        (["calibrate", "--name", 'my "gpu"'], "--name 'my \"gpu\"': not a usable name"),
        (["calibrate", "--name", "a/b"], "--name 'a/b': not a usable name"),
        (["validate", "--output-dir", "{tmp}/a_file"], "--output-dir {tmp}/a_file: not a folder"),
        (["validate", "--output-dir", "{tmp}", "--prefix", "taken"], "taken.md: file exists"),
        (["validate", "--output-dir", "{tmp}", "--prefix", "../x"], "--prefix '../x'"),
    ],
)
def test_bad_output_paths_are_refused_before_any_work(
    tmp_path, capsys, monkeypatch, argv, fragment
):
    """Issue 11, point 5: --out into a missing folder, --plot into one, calibrate --output
    into an unwritable place (after 64 s of measuring) and an invalid --name (after 83 s)
    were found after the work. Now: exit 2, one line, and nothing measured or computed."""
    import specsim
    from specsim import validate
    from specsim.measure import _timing

    (tmp_path / "a_file").write_text("not a folder")
    (tmp_path / "taken.toml").write_text("")
    (tmp_path / "taken.md").write_text("")
    for module, name in [
        (specsim, "sweep"),
        (specsim, "throughput"),
        (specsim, "measure_and_calibrate"),
        (_timing, "measure_step_times"),
        (validate, "validate_local"),
        (validate, "validate_published"),
    ]:
        monkeypatch.setattr(module, name, _must_not_run)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code, _, err = run(capsys, *argv)
    assert code == EXIT_USAGE, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"specsim {argv[0]}: ")
    assert fragment.replace("{tmp}", str(tmp_path)) in err
