"""Mutated configs never crash: `dlcli validate` ends with exit 0 or 2 and no traceback."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlcli.cli.main import main

# small, so that every mutation builds fast; touches every section of the schema
VALID: dict[str, Any] = {
    "name": "mutant",
    "seed": 3,
    "data": {"dataset": "fashion_mnist", "validation_split": 0.1, "batch_size": 8,
             "normalize": "scale"},
    "model": {
        "input_shape": [8, 8, 1],
        "layers": [
            {"type": "Conv2D", "filters": 2, "kernel_size": 3, "padding": "same",
             "activation": "relu", "kernel_regularizer": {"l2": 0.001}},
            {"type": "BatchNorm"},
            {"type": "MaxPool2D", "pool_size": [2, 2]},
            {"type": "Flatten"},
            {"type": "Dense", "units": 4, "activation": "relu"},
            {"type": "Dropout", "rate": 0.2},
            {"type": "Dense", "units": 3, "activation": "softmax"},
        ],
    },
    "loss": {"type": "categorical_crossentropy"},
    "metrics": ["accuracy", {"type": "top_k_accuracy", "k": 2}],
    "optimizer": {"type": "adam", "learning_rate": 0.01},
    "training": {
        "epochs": 2,
        "lr_schedule": {"type": "step", "step_size": 1},
        "early_stopping": {"monitor": "val_loss", "patience": 1, "restore_best_weights": True},
    },
}

# small numbers only: a mutation should not ask for a gigabyte of weights
junk = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 40), st.floats(-2.0, 2.0),
    st.sampled_from([float("nan"), float("inf"), 1e-4, 0.5]),
    st.text(max_size=6), st.sampled_from(["relu", "same", "Dense", "adam", "val_loss", "x/y"]),
    st.lists(st.integers(-1, 5), max_size=4), st.dictionaries(st.text(max_size=4),
                                                             st.integers(0, 3), max_size=2),
)


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path in a nested dict/list, containers included."""
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += paths(v, (*prefix, i))
    return out


def parent_and_key(data: Any, path: tuple) -> tuple[Any, Any]:
    node = data
    for part in path[:-1]:
        node = node[part]
    return node, path[-1]


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    data = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 3))):
        candidates = [p for p in paths(data) if p]
        if not candidates:
            break
        path = draw(st.sampled_from(candidates))
        parent, key = parent_and_key(data, path)
        op = draw(st.sampled_from(["delete", "replace", "insert", "retype"]))
        if op == "delete":
            del parent[key]
        elif op == "replace":
            parent[key] = draw(junk)
        elif op == "insert":
            target = parent if isinstance(parent, dict) else parent[key]
            if isinstance(target, dict):
                target[draw(st.text(min_size=1, max_size=8))] = draw(junk)
            elif isinstance(target, list):
                target.insert(draw(st.integers(0, len(target))), draw(junk))
        else:  # the same value as another type: 3 -> "3", [2, 2] -> {}, "relu" -> ["relu"]
            value = parent[key]
            parent[key] = draw(st.sampled_from([str(value), [value], {"value": value}]))
    return data


@pytest.fixture(scope="module")
def config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mutations") / "config.yaml"


def check(path: Path, text: str) -> None:
    path.write_text(text)
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code in (0, 2), (text, result.output, result.exception)
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert result.output.startswith("error: ")


def test_the_unmutated_config_is_valid(config_path: Path) -> None:
    config_path.write_text(yaml.safe_dump(VALID))
    result = CliRunner().invoke(main, ["validate", str(config_path)])
    assert result.exit_code == 0, result.output


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=mutated())
def test_mutated_values_never_crash(config_path: Path, data: dict[str, Any]) -> None:
    check(config_path, yaml.safe_dump(data, sort_keys=False))


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(position=st.integers(0, 10_000), length=st.integers(0, 3),
       insert=st.sampled_from(["", ":", "- ", "[", "{", "}", "'", "\t", "\n  ", "&a", "*a", "!!",
                               "#", ",", "?", "|"]))
def test_mutated_text_never_crashes(config_path: Path, position: int, length: int,
                                    insert: str) -> None:
    text = yaml.safe_dump(VALID, sort_keys=False)
    at = position % (len(text) + 1)
    check(config_path, text[:at] + insert + text[at + length:])
