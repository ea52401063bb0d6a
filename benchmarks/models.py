"""The benchmark models, shared by bench_core, bench_epoch and bench_gpu: an MLP 784-256-128-10
and a two-conv CNN. Stdlib only, so a PyTorch worker that imports it loads nothing of dlcli's.
"""

from __future__ import annotations

from typing import Any

# as dlcli config layer lists (YAML, indented for a config's `layers:` key)
DLCLI_LAYERS = {
    "mlp": """
    - {type: Flatten}
    - {type: Dense, units: 256, activation: relu}
    - {type: Dense, units: 128, activation: relu}
    - {type: Dense, units: 10, activation: softmax}""",
    "cnn": """
    - {type: Conv2D, filters: 32, kernel_size: 3, padding: same}
    - {type: BatchNorm}
    - {type: Activation, activation: relu}
    - {type: MaxPool2D, pool_size: 2}
    - {type: Conv2D, filters: 64, kernel_size: 3, padding: same}
    - {type: BatchNorm}
    - {type: Activation, activation: relu}
    - {type: MaxPool2D, pool_size: 2}
    - {type: Flatten}
    - {type: Dense, units: 128, activation: relu}
    - {type: Dense, units: 10, activation: softmax}""",
}


def torch_models(torch: Any) -> dict[str, Any]:
    """The same two models in PyTorch (NCHW; the MLP takes flat (N, 784) rows), seeded with 0."""
    nn = torch.nn
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                        nn.Linear(128, 10))  # fmt: skip
    cnn = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10),
    )  # fmt: skip
    return {"mlp": mlp, "cnn": cnn}
