"""Pictures of runs: training curves, the confusion matrix, first-layer filters.

matplotlib is the optional extra `dlcli[plot]`, imported only here and only when a picture is
drawn, through its object-oriented API on the Agg canvas: no pyplot, no global backend switch,
so a program that embeds dlcli keeps its own matplotlib set-up. Every picture is written to a
temporary name and renamed, like the run's other files.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlcli.errors import DlcliError
from dlcli.extras import require

DPI = 120
PANEL_PX = (480, 360)  # one subplot of the curves; the figure is a grid of them
PANEL_COLUMNS = 3
TILE_PX = 80  # one filter or one unit's weights
TILE_COLUMNS = 8
MAX_TILES = 64
# history.csv columns that are not a train/validation quantity of their own
NOT_METRICS = ("epoch", "lr", "loss", "data_loss", "regularization", "seconds")


# -- data ----------------------------------------------------------------------------------
@dataclass
class Curves:
    """One run's history as columns, with its best and early-stopping epochs (1-based)."""

    name: str
    columns: dict[str, list[float]]
    best_epoch: int | None = None
    stopped_epoch: int | None = None
    monitor: str | None = None
    order: list[str] = field(default_factory=list)  # the columns in history.csv's order

    @classmethod
    def from_rows(cls, name: str, rows: Sequence[dict[str, Any]], best_epoch: int | None = None,
                  stopped_epoch: int | None = None, monitor: str | None = None) -> Curves:
        """Curves from history rows (the trainer's `history`, or history.csv's rows)."""
        order: list[str] = []
        for row in rows:
            order += [k for k in row if k not in order]
        columns = {k: [_number(row.get(k)) for row in rows] for k in order}
        if "epoch" not in columns:
            columns["epoch"] = [float(i + 1) for i in range(len(rows))]
        return cls(name, columns, best_epoch, stopped_epoch, monitor, order)

    @property
    def epochs(self) -> list[float]:
        return self.columns["epoch"]

    def metrics(self) -> list[str]:
        """The quantities besides loss (accuracy, f1, ...), in history order."""
        names = [k for k in self.order if k not in NOT_METRICS and not k.startswith("val_")]
        names += [k[4:] for k in self.order if k.startswith("val_") and k[4:] not in names
                  and k[4:] not in NOT_METRICS]
        return names

    def available(self) -> list[str]:
        """Every column that can be drawn (what --metric accepts)."""
        return [k for k in self.order if k != "epoch"]


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan  # an empty cell: a metric that one epoch did not have
    return number if math.isfinite(number) else math.nan  # a diverged epoch: a gap, no warning


def read_run(path: Path) -> Curves:
    """A run directory's history.csv, with run.json's best epoch and early-stopping point.

    A checkpoint inside `<run>/checkpoints/` stands for its run.

    Raises:
        DlcliError: no such directory, or no history.csv with at least one epoch in it.
    """
    path = Path(path)
    if path.parent.name == "checkpoints" and (path.is_file()
                                             or path.with_name(path.name + ".npz").is_file()):
        path = path.parent.parent
    if not path.exists():
        raise DlcliError(f"no run directory at {path}")
    if not path.is_dir():
        raise DlcliError(f"{path} is not a run directory")
    history = path / "history.csv"
    if not history.is_file():
        raise DlcliError(f"{path} has no history.csv (not a run directory, or no epoch has "
                         "finished yet)")
    try:
        with open(history, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, csv.Error, UnicodeDecodeError) as e:
        raise DlcliError(f"cannot read {history}: {getattr(e, 'strerror', None) or e}") from None
    if not rows:
        raise DlcliError(f"{history} has no epochs yet")
    info = _read_json(path / "run.json") or {}
    metrics = _read_json(path / "metrics.json") or {}
    best = info.get("best_epoch", metrics.get("best_epoch"))
    stopped = metrics.get("stopped_epoch")
    if info.get("status") == "stopped early" and not stopped:
        stopped = _number(rows[-1].get("epoch"))
    return Curves.from_rows(path.name, rows, _epoch(best), _epoch(stopped),
                            info.get("monitor") or metrics.get("monitor"))


def _read_json(path: Path) -> dict[str, Any] | None:
    """A small JSON object, or None when missing or unreadable (the curves do without it)."""
    try:
        if path.stat().st_size > 1 << 20:
            return None
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _epoch(value: Any) -> int | None:
    number = _number(value)
    return int(number) if math.isfinite(number) and number >= 1 else None


# -- figures -------------------------------------------------------------------------------
def _figure(width_px: int, height_px: int) -> Any:
    """An empty matplotlib Figure on the Agg canvas, exactly width_px x height_px when saved."""
    require("matplotlib", "plot", "plotting")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, out: Path) -> Path:
    """Write fig to out (format from the suffix, png when none), atomically."""
    out = Path(out)
    fmt = out.suffix[1:].lower() or "png"
    supported = fig.canvas.get_supported_filetypes()
    if fmt not in supported:
        raise DlcliError(f"cannot write {out}: unknown picture format '.{fmt}'; use one of: "
                         f"{', '.join('.' + s for s in sorted(supported))}")
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        fig.savefig(tmp, format=fmt, dpi=DPI)
        os.replace(tmp, out)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise DlcliError(f"cannot write {out}: {e.strerror or e}") from None
    return out


def curves_figure(runs: Sequence[Curves], quantities: Sequence[str], with_lr: bool = False,
                  title: str | None = None) -> Any:
    """One subplot per quantity (train solid, validation dashed), runs overlaid.

    Args:
        runs: the runs to draw; their names label the lines when there are several.
        quantities: history columns; a train quantity brings its val_ column along.
        with_lr: add the learning rate as a subplot of its own.
        title: a line above the grid.
    Returns:
        A matplotlib Figure of a grid of PANEL_PX subplots, PANEL_COLUMNS wide.
    """
    panels = [*quantities, *(["lr"] if with_lr else [])]
    cols = min(len(panels), PANEL_COLUMNS)
    rows = math.ceil(len(panels) / cols)
    fig = _figure(cols * PANEL_PX[0], rows * PANEL_PX[1])
    from matplotlib.ticker import MaxNLocator  # after _figure, which names the extra if missing

    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    several = len(runs) > 1
    colors = [f"C{i % 10}" for i in range(len(runs))]
    for ax, quantity in zip(axes, panels, strict=False):
        for run, color in zip(runs, colors, strict=True):
            _draw_quantity(ax, run, quantity, color, several)
        ax.set_title("learning rate" if quantity == "lr" else quantity)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if quantity == "lr":
            _log_scale_if_wide(ax, [v for run in runs for v in run.columns.get("lr", [])])
        if not several and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, framealpha=0.7)
    if several:
        _shared_legend(fig, axes[: len(panels)])
    if title:
        fig.suptitle(title)
    return fig


def _shared_legend(fig: Any, axes: Sequence[Any]) -> None:
    """Several runs: one legend under the grid (the figure grows to hold it), so long run
    names never cover the curves; each label once, though it appears in several panels."""
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    if not entries:
        return
    ncols = 1 if fig.get_figwidth() * DPI < 2 * PANEL_PX[0] else 2
    lines = math.ceil(len(entries) / ncols)
    width, height = fig.get_size_inches()
    fig.set_size_inches(width, height + (lines * 15 + 20) / DPI)
    fig.legend(list(entries.values()), list(entries), loc="outside lower center", ncols=ncols,
               fontsize=7, frameon=False)


def _draw_quantity(ax: Any, run: Curves, quantity: str, color: str, several: bool) -> None:
    """Draw one run's quantity (and its validation twin) with the best and stopping epochs."""
    x = run.epochs
    prefix = f"{run.name}: " if several else ""
    lines = [(quantity, "-", quantity if quantity.startswith("val_") or quantity == "lr"
              else "train")]
    if not quantity.startswith("val_") and f"val_{quantity}" in run.columns:
        lines.append((f"val_{quantity}", "--", "validation"))
    if (quantity == "loss" and not several
            and any(v > 0 for v in run.columns.get("regularization", []))):
        lines.append(("data_loss", ":", "train data loss (no regularization)"))
    drawn = False
    for column, style, label in lines:
        if column in run.columns:
            ax.plot(x, run.columns[column], style, color=color, label=prefix + label,
                    marker="." if len(x) < 30 else None)
            drawn = True
    if not drawn:
        return
    marker = run.name if several else None
    if run.best_epoch is not None:
        what = f" by {run.monitor}" if run.monitor else ""
        ax.axvline(run.best_epoch, color="green" if marker is None else color, linestyle=":",
                   label=f"{prefix}best epoch {run.best_epoch}{what}")
    if run.stopped_epoch is not None:
        ax.axvline(run.stopped_epoch, color="red" if marker is None else color, linestyle="-.",
                   label=f"{prefix}early stop after epoch {run.stopped_epoch}")


def _log_scale_if_wide(ax: Any, values: list[float]) -> None:
    finite = [v for v in values if math.isfinite(v)]
    if finite and min(finite) > 0 and max(finite) / min(finite) >= 20:
        ax.set_yscale("log")


def training_curves(run: Curves, out: Path, title: str | None = None) -> Path:
    """curves.png of one run: loss, every metric, the learning rate, best and stopping epochs."""
    fig = curves_figure([run], ["loss", *run.metrics()], with_lr="lr" in run.columns,
                        title=title)
    return _save(fig, out)


def plot_curves(runs: list[Path], metric: str | None, out: Path) -> Path:
    """The curves of several runs overlaid, to compare them.

    Args:
        runs: run directories (a checkpoint in `<run>/checkpoints/` stands for its run).
        metric: one history column to draw (e.g. "val_accuracy"; a train quantity brings its
            validation twin); None draws the loss and the first metric.
        out: the picture to write (png unless its suffix names another format).
    Returns:
        out.
    Raises:
        DlcliError: a missing run, a run without history, or a metric no run has (the message
            lists the ones there are).
    Example:
        plot_curves([Path("runs/a"), Path("runs/b")], "val_accuracy", Path("plot.png"))
    """
    require("matplotlib", "plot", "plotting")
    curves = [read_run(Path(p)) for p in runs]
    _disambiguate(curves, [Path(p) for p in runs])
    if metric is None:
        first = next((m for c in curves for m in c.metrics()), None)
        quantities = ["loss"] + ([first] if first else [])
    else:
        available: list[str] = []
        for c in curves:
            available += [k for k in c.available() if k not in available]
        if metric not in available:
            raise DlcliError(f"unknown metric {metric!r}; the runs have: {', '.join(available)}")
        quantities = [metric]
    title = curves[0].name if len(curves) == 1 else f"{len(curves)} runs"
    fig = curves_figure(curves, quantities, title=title)
    return _save(fig, out)


def _disambiguate(curves: list[Curves], paths: list[Path]) -> None:
    """Runs with the same folder name (a/run, b/run) are labelled with their parent too."""
    names = [c.name for c in curves]
    for c, p in zip(curves, paths, strict=True):
        if names.count(c.name) > 1:
            c.name = f"{p.resolve().parent.name}/{c.name}"


class CurvesHook:
    """Trainer hook: curves.png in the run directory when training ends (any status), as long
    as one epoch finished."""

    name = "curves plot"
    filename = "curves.png"

    def on_train_end(self, trainer: Any, status: str) -> None:
        history = trainer.history
        if not history:
            return
        best = None if trainer.best_epoch is None else trainer.best_epoch + 1
        stopped = _epoch(history[-1].get("epoch", len(history))) if status == "stopped early" \
            else None
        run = Curves.from_rows(trainer.run_dir.name, history, best, stopped,
                               trainer.best.monitor)
        training_curves(run, Path(trainer.run_dir) / self.filename,
                        title=f"{trainer.cfg.name}: {status} after {len(history)} epochs")


# -- confusion matrix ----------------------------------------------------------------------
def plot_confusion(matrix: Any, class_names: Sequence[str] | None, out: Path,
                   title: str | None = None) -> Path:
    """The confusion matrix normalized per true class, percentages (and counts) in the cells.

    Args:
        matrix: (n, n) counts, rows the true classes, columns the predicted ones.
        class_names: the axis labels; class indices when None.
        out: the picture to write.
        title: a line above the matrix.
    Returns:
        out.
    """
    m = np.asarray(matrix, dtype=np.int64)
    n = len(m)
    names = [str(s) for s in (class_names or range(n))]
    support = m.sum(axis=1, keepdims=True)
    share = np.divide(m, support, out=np.zeros(m.shape), where=support > 0)
    side = min(max(480, 40 * n + 200), 2400)
    fig = _figure(side + 100, side)
    ax = fig.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of the true class")
    if n <= 50:
        short = [s if len(s) <= 20 else s[:19] + "…" for s in names]
        ax.set_xticks(range(n), short, rotation=45 if n > 6 or max(map(len, short)) > 6 else 0,
                      ha="right" if n > 6 or max(map(len, short)) > 6 else "center")
        ax.set_yticks(range(n), short)
    if n <= 30:
        size = 9 if n <= 10 else 6
        for i in range(n):
            for j in range(n):
                text = f"{100 * share[i, j]:.0f}%"
                if n <= 12:
                    text += f"\n{m[i, j]:,}"
                ax.text(j, i, text, ha="center", va="center", fontsize=size,
                        color="white" if share[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix (normalized per true class)")
    return _save(fig, out)


# -- filters -------------------------------------------------------------------------------
def plot_filters(source: Path, out: Path) -> Path:
    """The first Conv2D layer's kernels, and the first Dense layer's weights when it sees the
    flattened input image, as grids of small images (up to MAX_TILES each).

    Args:
        source: a run directory (its checkpoints/best, else last) or a checkpoint.
        out: the picture to write.
    Returns:
        out.
    Raises:
        DlcliError: no run or checkpoint there, or nothing to draw (no Conv2D layer, and no
            Dense layer on the flattened image).
    """
    require("matplotlib", "plot", "plotting")
    from dlcli.core.backend import to_host
    from dlcli.io.checkpoint import load_checkpoint
    from dlcli.nn.layers import Conv2D, Dense
    from dlcli.nn.restore import restore_model

    _, model = restore_model(load_checkpoint(_checkpoint_of(Path(source))))
    shape = tuple(int(d) for d in model.input_shape)
    sections: list[tuple[str, list[np.ndarray], bool]] = []  # title, tiles, rgb
    layers = model.walk()
    conv = next((layer for layer in layers if isinstance(layer, Conv2D)), None)
    if conv is not None:
        kernel = to_host(conv.params["kernel"].data)  # (kh, kw, cin, cout)
        kh, kw, cin, cout = kernel.shape
        rgb = cin == 3
        tiles = [kernel[:, :, :, f] if rgb else kernel[:, :, :, f].mean(axis=2)
                 for f in range(min(cout, MAX_TILES))]
        how = "as RGB" if rgb else ("averaged over channels" if cin > 1 else "")
        sections.append((f"{conv.name} (Conv2D): {len(tiles)} of {cout} filters, {kh}x{kw}, "
                         f"{cin} input channel{'s' * (cin > 1)} {how}".rstrip(), tiles, rgb))
    dense_index = next((i for i, layer in enumerate(layers) if isinstance(layer, Dense)), None)
    image = len(shape) == 3 or (len(shape) == 2 and min(shape) >= 2)
    if dense_index is not None and image and _sees_flat_image(layers, dense_index, shape):
        dense = layers[dense_index]
        kernel = to_host(dense.params["kernel"].data)  # (h*w*c, units)
        h, w = shape[:2]
        c = shape[2] if len(shape) == 3 else 1
        rgb = c == 3
        tiles = []
        for u in range(min(kernel.shape[1], MAX_TILES)):
            weights = kernel[:, u].reshape(h, w, c)
            tiles.append(weights if rgb else weights.mean(axis=2))
        how = "as RGB" if rgb else ("averaged over channels" if c > 1 else "")
        sections.append((f"{dense.name} (Dense): {len(tiles)} of {kernel.shape[1]} units' "
                         f"weights on the {h}x{w} input {how}".rstrip(), tiles, rgb))
    if not sections:
        raise DlcliError(
            f"nothing to draw for {source}: the model has no Conv2D layer, and no Dense layer "
            f"that sees the flattened input image (input shape {shape})"
        )
    return _save(_tiles_figure(sections), out)


def _checkpoint_of(source: Path) -> Path:
    """A run directory's best checkpoint (else its last), or the checkpoint given."""
    if source.is_dir():
        for name in ("best.npz", "last.npz"):
            if (source / "checkpoints" / name).is_file():
                return source / "checkpoints" / name
        raise DlcliError(f"{source} has no checkpoints/best.npz or last.npz (not a run "
                         "directory, or no epoch has finished yet)")
    if not source.exists() and not source.with_name(source.name + ".npz").exists():
        raise DlcliError(f"no run directory or checkpoint at {source}")
    return source


def _sees_flat_image(layers: list[Any], index: int, shape: tuple[int, ...]) -> bool:
    """Whether layers[index] gets the input image flattened: nothing with weights or another
    size (a convolution, a pooling) comes before it."""
    size = math.prod(shape)
    kernel_in = layers[index].params["kernel"].data.shape[0]
    if kernel_in != size:
        return False
    for layer in layers[:index]:
        out = getattr(layer, "output_shape", None)
        if "kernel" in layer.params or (out is not None and math.prod(out) != size):
            return False
    return True


def _tiles_figure(sections: list[tuple[str, list[np.ndarray], bool]]) -> Any:
    """Each section a titled grid of tiles, TILE_COLUMNS wide, stacked top to bottom."""
    grids = [(math.ceil(len(tiles) / TILE_COLUMNS), min(len(tiles), TILE_COLUMNS))
             for _, tiles, _ in sections]
    heights = [rows * TILE_PX + 60 for rows, _ in grids]
    fig = _figure(TILE_COLUMNS * TILE_PX + 140, sum(heights))
    subs = np.atleast_1d(fig.subfigures(len(sections), 1, height_ratios=heights))
    for sub, (title, tiles, rgb), (rows, cols) in zip(subs, sections, grids, strict=True):
        sub.suptitle(title, fontsize=9)
        axes = sub.subplots(rows, cols, squeeze=False).ravel()
        limit = max(float(np.abs(t).max()) for t in tiles) or 1.0
        image = None
        for ax, tile in zip(axes, tiles, strict=False):
            if rgb:  # each tile stretched to [0, 1]: colours show the mix, not the scale
                low, high = float(tile.min()), float(tile.max())
                ax.imshow((tile - low) / (high - low or 1.0), interpolation="nearest")
            else:  # one symmetric scale: red positive, blue negative, comparable tiles
                image = ax.imshow(tile, cmap="RdBu_r", vmin=-limit, vmax=limit,
                                  interpolation="nearest")
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])
        for ax in axes[len(tiles):]:
            ax.set_visible(False)
        if image is not None:
            sub.colorbar(image, ax=list(axes), shrink=0.8)
    return fig
