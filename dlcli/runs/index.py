"""The runs under a folder and their true status, read from each run directory.

run.json (written by the trainer at the start, after each epoch and at the end) is the main
source. A run killed without a chance to write (SIGKILL, power loss) stays "running" there, so
a "running" run of this host whose process is gone, or whose pid now belongs to another
process, is reported as "interrupted". Runs from before run.json existed are read from
metrics.json, history.csv, config.yaml, summary.txt and train.log. A damaged file never stops
the scan: the run gets status "damaged" (or is skipped) with a note saying why.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATUSES = ("running", "finished", "stopped early", "stopped by scheduler", "interrupted",
            "failed")
# a run folder holds at least one of these; other folders under runs/ are not runs
RUN_FILES = ("run.json", "metrics.json", "history.csv", "config.yaml", "train.log")
MAX_FILE_BYTES = 1 << 20  # run.json, metrics.json, config.yaml: the trainer writes a few KiB
MAX_HISTORY_BYTES = 16 << 20
PID_MAX = 1 << 22  # Linux's largest pid_max
# a pid whose process started this long after the run did belongs to another process (the
# clock ticks of /proc/<pid>/stat against the boot time's whole seconds: well below this)
START_SLACK_S = 2.0
_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) ")
_TOTAL_PARAMS = re.compile(r"Total params: ([\d,]+)")


@dataclass
class RunInfo:
    """One run directory as `dlcli runs` shows it; None where the run does not say."""

    name: str
    path: str
    status: str  # one of STATUSES, "damaged" or "unknown"
    started_at: float | None = None  # unix time
    updated_at: float | None = None
    epochs_done: int | None = None
    epochs: int | None = None  # planned
    best_epoch: int | None = None  # 1-based
    monitor: str | None = None
    best: float | None = None
    test: dict[str, float | None] | None = None
    params: int | None = None
    host: str | None = None
    pid: int | None = None
    error: str | None = None
    source: str = "run.json"  # or "legacy" (a run from before run.json) or "none"
    notes: list[str] = field(default_factory=list)  # why a status was derived, what is damaged
    local: bool = True  # ran on this host (or unknown)
    mode: str = "min"  # whether a lower or higher `best` is better

    @property
    def wall_s(self) -> float | None:
        """Seconds from the start to the last update."""
        if self.started_at is None or self.updated_at is None:
            return None
        return max(0.0, self.updated_at - self.started_at)

    def to_json(self) -> dict[str, Any]:
        """A dict for `--json`: every field, the wall time, and the start as local ISO 8601."""
        out = asdict(self)
        out["wall_s"] = self.wall_s
        out["started"] = (None if self.started_at is None else
                          time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started_at)))
        return out


def scan_runs(root: str | os.PathLike[str]) -> tuple[list[RunInfo], list[str]]:
    """Read every run directory directly under root (or root alone, when it is a run).

    Args:
        root: the folder that holds the runs (`runs/`), or one run directory.
    Returns:
        The runs in folder-name order, and notes on the entries skipped (not a run).
    Raises:
        FileNotFoundError / NotADirectoryError: root is missing or not a folder.
    """
    base = Path(root)
    if not base.exists():
        raise FileNotFoundError(str(base))
    if not base.is_dir():
        raise NotADirectoryError(str(base))
    if _is_run(base):  # `dlcli runs runs/mnist-...`: the table of that one run
        run = load_run(base)
        run.name = base.resolve().name
        return [run], []
    runs: list[RunInfo] = []
    skipped: list[str] = []
    for entry in _folders(base):
        try:
            if _is_run(entry):
                runs.append(load_run(entry))
                continue
            # a folder of runs one level down (a `dlcli tune` sweep): its runs as sweep/trial
            inner = [sub for sub in _folders(entry) if _is_run(sub)]
        except OSError as e:
            skipped.append(f"{entry.name}: cannot be read ({e.strerror or e})")
            continue
        if not inner:
            skipped.append(f"{entry.name}: not a run directory (no run.json, metrics.json, "
                           "history.csv, config.yaml or train.log)")
        for sub in inner:
            run = load_run(sub)
            run.name = f"{entry.name}/{sub.name}"
            runs.append(run)
    return runs, skipped


def _folders(path: Path) -> list[Path]:
    """The visible subfolders of path, by name."""
    return sorted((p for p in path.iterdir() if not p.name.startswith(".") and p.is_dir()),
                  key=lambda p: p.name)


def _is_run(path: Path) -> bool:
    return any((path / f).exists() for f in RUN_FILES)


def load_run(path: str | os.PathLike[str]) -> RunInfo:
    """One run directory as a RunInfo; never raises on damaged or partial contents."""
    path = Path(path)
    info = RunInfo(name=path.name, path=str(path), status="unknown", source="none")
    config = _read_config(path, info)
    chosen = _get(config, "training", "early_stopping", "mode")  # else "auto"
    info.epochs = _as_int(_get(config, "training", "epochs"))
    raw = _read_json(path / "run.json", info)
    if raw is _MISSING:
        _read_legacy(path, info)
    elif isinstance(raw, dict) and _apply_run_json(raw, info):
        info.source = "run.json"
        if info.status == "running":
            _check_running(info)
    else:  # what the other files say, under status "damaged"
        if raw is not _BAD and not isinstance(raw, dict):
            info.notes.append("run.json is not a JSON object")
        info.source = "run.json"
        _read_legacy(path, info)
        info.status = "damaged"
    if chosen in ("min", "max"):
        info.mode = chosen
    elif info.monitor:
        info.mode = metric_mode(info.monitor)
    return info


def metric_mode(name: str) -> str:
    """"min" for losses and errors, "max" for accuracy-like metrics (the trainer's rule)."""
    base = name.removeprefix("val_").removeprefix("test.")
    if "loss" in base or base.endswith(("mse", "mae", "rmse")):
        return "min"
    if base.endswith(("accuracy", "precision", "recall", "f1", "r2")):
        return "max"
    return "min"


# -- run.json ------------------------------------------------------------------------------
def _apply_run_json(raw: dict[str, Any], info: RunInfo) -> bool:
    """Fill info from run.json; False (with a note) when a field has the wrong type."""
    status = raw.get("status")
    if status not in STATUSES:
        info.notes.append(f"run.json: unknown status {status!r}")
        return False
    checks = {
        "started_at": _as_time, "updated_at": _as_time, "epochs": _as_int,
        "epochs_done": _as_int, "best_epoch": _as_int, "best": _as_float, "params": _as_int,
    }
    values: dict[str, Any] = {}
    for key, conv in checks.items():
        value = raw.get(key)
        values[key] = conv(value)
        if value is not None and values[key] is None and key != "best":
            info.notes.append(f"run.json: {key} is {value!r}")
            return False
    for key in ("name", "host", "monitor", "error"):
        value = raw.get(key)
        if value is not None and not isinstance(value, str):
            info.notes.append(f"run.json: {key} is not a string")
            return False
    pid = raw.get("pid")
    if pid is not None and (_as_int(pid) is None or not 0 < pid < PID_MAX):
        # never passed to os.kill: 0 and -1 there mean a process group and every process
        info.notes.append(f"run.json: pid is {pid!r}")
        return False
    test = _as_metrics(raw.get("test"))
    if raw.get("test") is not None and test is None:
        info.notes.append("run.json: test is not a mapping of metric names to numbers")
        return False
    info.status = status
    info.started_at, info.updated_at = values["started_at"], values["updated_at"]
    info.epochs = values["epochs"] if values["epochs"] is not None else info.epochs
    info.epochs_done, info.best_epoch = values["epochs_done"], values["best_epoch"]
    info.best, info.params, info.test = values["best"], values["params"], test
    info.monitor, info.host, info.error = raw.get("monitor"), raw.get("host"), raw.get("error")
    info.pid = pid
    return True


def _check_running(info: RunInfo) -> None:
    """Make a "running" status true: a run of this host whose process is gone is interrupted."""
    if info.host is not None and info.host != socket.gethostname():
        info.local = False
        return
    if info.pid is None:
        return
    why = process_gone(info.pid, info.started_at)
    if why:
        info.status = "interrupted"
        info.notes.append(f"run.json says running, but {why}")


def process_gone(pid: int, started_at: float | None) -> str | None:
    """Why process `pid` cannot be the run that started at `started_at`, or None if it can be.

    Gone: no such process, a zombie (killed, not yet reaped), or a process that started after
    the run did (the pid was reused). Where /proc is missing only the first check is made.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"its process {pid} is gone"
    except PermissionError:
        pass  # alive, another user's
    except OSError:
        return None
    stat = _proc_stat(pid)
    if stat is not None:
        state, start = stat
        if state in ("Z", "X"):
            return f"its process {pid} has exited"
        if start is not None and started_at is not None and start > started_at + START_SLACK_S:
            return f"pid {pid} now belongs to another process (started later than the run)"
        return None
    try:  # no stat to read: the command line must at least be a dlcli one
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if b"dlcli" not in cmdline:
        return f"pid {pid} now belongs to another process (not dlcli)"
    return None


def _proc_stat(pid: int) -> tuple[str, float | None] | None:
    """(state, start time as unix time or None) from /proc/<pid>/stat; None without /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, UnicodeDecodeError):
        return None
    # the command name (field 2) is in parentheses and may hold spaces and parentheses
    fields = text[text.rfind(")") + 2:].split()
    if len(fields) < 20:
        return None
    state = fields[0]
    try:
        ticks = int(fields[19])  # field 22: start time in clock ticks after boot
        boot = _boot_time()
        hz = os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError):
        return state, None
    return state, None if boot is None else boot + ticks / hz


def _boot_time() -> float | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


# -- runs from before run.json ------------------------------------------------------------
def _read_legacy(path: Path, info: RunInfo) -> None:
    """What metrics.json, history.csv, summary.txt and train.log say (an older run)."""
    if info.source == "none":
        info.source = "legacy"
    metrics = _read_json(path / "metrics.json", info)
    damaged = metrics is _BAD
    if isinstance(metrics, dict):
        info.test = _as_metrics(metrics.get("test"))
        info.best_epoch = _as_int(metrics.get("best_epoch"))
        info.best = _as_float(metrics.get("best"))
        monitor = metrics.get("monitor")
        info.monitor = monitor if isinstance(monitor, str) else None
        info.epochs_done = _as_int(metrics.get("epochs_run"))
        stopped = _as_int(metrics.get("stopped_epoch"))
        info.status = "stopped early" if stopped else "finished"
    elif metrics is not _MISSING and metrics is not _BAD:
        info.notes.append("metrics.json is not a JSON object")
        damaged = True
    rows = _read_history(path / "history.csv", info)
    if info.epochs_done is None and rows is not None:
        info.epochs_done = rows
    first, last, ending = _read_log(path / "train.log")
    info.started_at, info.updated_at = first, last
    if info.status == "unknown" and ending:
        info.status = ending
    try:
        found = _TOTAL_PARAMS.search((path / "summary.txt").read_text(errors="replace")[:65536])
        info.params = int(found.group(1).replace(",", "")) if found else None
    except OSError:
        pass
    if damaged:
        info.status = "damaged"


def _read_history(path: Path, info: RunInfo) -> int | None:
    """The number of epochs history.csv holds; None when it is missing or damaged."""
    try:
        if path.stat().st_size > MAX_HISTORY_BYTES:
            info.notes.append("history.csv is too large to read")
            return None
        with open(path, newline="", errors="replace") as f:
            return sum(1 for _ in csv.DictReader(f))
    except FileNotFoundError:
        return None
    except (OSError, csv.Error) as e:
        info.notes.append(f"history.csv cannot be read ({e})")
        return None


def _read_log(path: Path) -> tuple[float | None, float | None, str | None]:
    """First and last timestamps of train.log (local time), and how it ended if it says."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096).decode(errors="replace").splitlines()
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - 4096))
            tail = f.read().decode(errors="replace").splitlines()
    except OSError:
        return None, None, None
    stamps = [_log_time(line) for line in head + tail]
    stamps = [s for s in stamps if s is not None]
    ending = None
    for line in reversed(tail):
        text = line[20:] if _log_time(line) is not None else line
        if text.startswith("interrupted by") or text.startswith("stopped by KeyboardInterrupt"):
            ending = "interrupted"
        elif text.startswith(("error: ", "stopped by ")):
            ending = "failed"
        if ending:
            break
    return (stamps[0] if stamps else None), (stamps[-1] if stamps else None), ending


def _log_time(line: str) -> float | None:
    found = _LOG_TIME.match(line)
    if not found:
        return None
    try:
        return time.mktime(time.strptime(found.group(1), "%Y-%m-%d %H:%M:%S"))
    except (ValueError, OverflowError):
        return None


# -- small readers -------------------------------------------------------------------------
_MISSING: Any = object()
_BAD: Any = object()


def _read_json(path: Path, info: RunInfo) -> Any:
    """The parsed file, _MISSING when absent, _BAD (with a note) when unreadable or not JSON."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            info.notes.append(f"{path.name} is larger than {MAX_FILE_BYTES >> 20} MiB")
            return _BAD
        text = path.read_text()
    except FileNotFoundError:
        return _MISSING
    except (OSError, UnicodeDecodeError) as e:
        info.notes.append(f"{path.name} cannot be read ({getattr(e, 'strerror', None) or e})")
        return _BAD
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        info.notes.append(f"{path.name} is not valid JSON ({e})")
        return _BAD


def read_config(path: str | os.PathLike[str]) -> Any:
    """A run's config.yaml parsed with yaml.safe_load.

    Raises:
        OSError: missing or unreadable; ValueError: too large or not valid YAML.
    """
    import yaml

    path = Path(path)
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ValueError(f"{path} is larger than {MAX_FILE_BYTES >> 20} MiB")
    try:
        return yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as e:
        raise ValueError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None


def _read_config(path: Path, info: RunInfo) -> dict[str, Any] | None:
    try:
        data = read_config(path / "config.yaml")
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        info.notes.append(f"config.yaml: {e}")
        return None
    return data if isinstance(data, dict) else None


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _as_float(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) if math.isfinite(value) else None
    return None


def _as_time(value: Any) -> float | None:
    v = _as_float(value)
    return v if v is not None and 0 <= v < 1e11 else None


def _as_metrics(value: Any) -> dict[str, float | None] | None:
    """{name: number or None}; None when value is not such a mapping."""
    if not isinstance(value, dict):
        return None
    out: dict[str, float | None] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not (v is None or _is_number(v)):
            return None
        out[k] = _as_float(v)  # NaN and infinities as None
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# -- sorting -------------------------------------------------------------------------------
SORT_KEYS = ("name", "start", "status", "epochs", "best", "wall")
# --sort status: what needs attention first
_STATUS_RANK = {s: i for i, s in enumerate(
    ("running", "failed", "interrupted", "damaged", "unknown", "stopped by scheduler",
     "stopped early", "finished"))}


def sort_keys(runs: list[RunInfo]) -> list[str]:
    """The keys --sort takes for these runs: SORT_KEYS and test.<metric> of every test metric."""
    metrics: list[str] = []
    for run in runs:
        metrics += [f"test.{k}" for k in run.test or {} if f"test.{k}" not in metrics]
    return [*SORT_KEYS, *metrics]


def sort_runs(runs: list[RunInfo], key: str, reverse: bool = False) -> list[RunInfo]:
    """The runs in the key's natural order; runs without a value come last either way.

    Orders: name A-Z; start newest first; status running, failed, interrupted, damaged, unknown,
    stopped early, finished; epochs most done first; best and test.<metric> best first (lower
    for losses and errors, higher for accuracy-like); wall longest first.

    Raises:
        DlcliError: an unknown key (the message lists the valid ones).
    """
    valid = sort_keys(runs)
    if key not in valid:
        from dlcli.errors import DlcliError

        raise DlcliError(f"unknown sort key {key!r}; expected one of: {', '.join(valid)}")

    def value(run: RunInfo) -> Any:
        if key == "name":
            return run.name
        if key == "start":
            return None if run.started_at is None else -run.started_at
        if key == "status":
            return _STATUS_RANK.get(run.status, len(_STATUS_RANK))
        if key == "epochs":
            return None if run.epochs_done is None else -run.epochs_done
        if key == "wall":
            return None if run.wall_s is None else -run.wall_s
        if key == "best":
            v, mode = run.best, run.mode
        else:
            metric = key.removeprefix("test.")
            v, mode = (run.test or {}).get(metric), metric_mode(metric)
        return None if v is None else (v if mode == "min" else -v)

    by_name = sorted(runs, key=lambda r: r.name)
    known = [r for r in by_name if value(r) is not None]
    known.sort(key=value, reverse=reverse)
    return known + [r for r in by_name if value(r) is None]
