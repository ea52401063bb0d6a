"""Summary data of a built model: per-layer shapes, parameters, MACs and memory, as Keras counts.

`summary_dict` is what `dlcli summary --json` prints; `summary_text` is a plain-text table for
run directories (summary.txt). The CLI renders the same data with rich.
"""

from __future__ import annotations

from typing import Any

from dlcli.nn.sequential import Sequential

# the table names layer classes as Keras prints them; configs accept both spellings
KERAS_CLASS = {"MaxPool2D": "MaxPooling2D", "AvgPool2D": "AveragePooling2D",
               "BatchNorm": "BatchNormalization"}
BYTES_PER_PARAM = 4  # float32


def readable_bytes(size: float) -> str:
    """Keras's format: 1687944 -> '1.61 MB' (powers of 1024, two decimals)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024:
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} PB"


def readable_count(n: float) -> str:
    """4303872 -> '4.30 M' (powers of 1000)."""
    for unit in ("", "K", "M", "G", "T"):
        if abs(n) < 1000:
            return f"{n:.0f}" if unit == "" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n:.2f} P"


def shape_str(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join(str(d) for d in ("None", *shape)) + ")"


def summary_dict(model: Sequential) -> dict[str, Any]:
    """The summary as JSON-able data; output shapes exclude the batch axis."""
    rows = model.summary_rows()
    top = [r for r in rows if r["depth"] == 0]  # a block's row already counts its layers
    total = sum(r["params"] for r in top)
    trainable = sum(r["trainable_params"] for r in top)
    return {
        "name": model.name,
        "input_shape": list(model.input_shape),
        "layers": [
            {
                "name": r["name"],
                "type": r["type"],
                "output_shape": list(r["output_shape"]),
                "params": r["params"],
                "trainable_params": r["trainable_params"],
                "macs": r["macs"],
                "activation_bytes": r["activation_bytes"],
                "depth": r["depth"],
            }
            for r in rows
        ],
        "total_params": total,
        "trainable_params": trainable,
        "non_trainable_params": total - trainable,
        "total_macs": sum(r["macs"] for r in top),
        # every row's output is a tensor of its own (a block's is the sum F(x) + shortcut)
        "total_activation_bytes": sum(r["activation_bytes"] for r in rows),
    }


def summary_lines(model: Sequential) -> tuple[list[list[str]], list[str]]:
    """Table rows (one per layer) and the footer lines, as strings."""
    s = summary_dict(model)
    rows = [
        ["  " * r["depth"] + f"{r['name']} ({KERAS_CLASS.get(r['type'], r['type'])})",
         shape_str(tuple(r["output_shape"])), f"{r['params']:,}",
         f"{r['macs']:,}", readable_bytes(r["activation_bytes"])]
        for r in s["layers"]
    ]
    non_trainable = s["non_trainable_params"]
    footer = [
        f" Total params: {s['total_params']:,} "
        f"({readable_bytes(s['total_params'] * BYTES_PER_PARAM)})",
        f" Trainable params: {s['trainable_params']:,} "
        f"({readable_bytes(s['trainable_params'] * BYTES_PER_PARAM)})",
        f" Non-trainable params: {non_trainable:,} "
        f"({readable_bytes(non_trainable * BYTES_PER_PARAM)})",
        f" Forward MACs per sample: {s['total_macs']:,} ({readable_count(s['total_macs'])})",
        f" Activation memory per sample: {readable_bytes(s['total_activation_bytes'])}",
    ]
    return rows, footer


COLUMNS = ["Layer (type)", "Output Shape", "Param #", "MACs / sample", "Activations / sample"]


def summary_text(model: Sequential) -> str:
    """The summary as a plain-text table (for summary.txt)."""
    rows, footer = summary_lines(model)
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(COLUMNS)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "-" * len(line(COLUMNS))
    out = [f'Model: "{model.name}"', rule, line(COLUMNS), rule.replace("-", "=")]
    out += [line(r) for r in rows]
    out += [rule, *footer]
    return "\n".join(out) + "\n"
