"""The config library: schema defaults and aliases, YAML positions, --set, errors, building."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from dlcli.config import (
    Config,
    ConfigError,
    config_json_schema,
    load_config,
    load_config_text,
    resolved_yaml,
)
from dlcli.config.errors import ConfigIssue, SourceMap, closest, format_path
from dlcli.config.load import parse_key, parse_yaml
from dlcli.config.schema import (
    ACTIVATIONS,
    INITIALIZERS,
    LAYER_CONFIGS,
    OPTIMIZER_CONFIGS,
    AdamWConfig,
    BatchNormConfig,
    Conv2DConfig,
    LossConfig,
    MaxPool2DConfig,
    ReduceOnPlateauSchedule,
    SGDConfig,
    TopKAccuracyConfig,
)
from dlcli.core.ops.conv import pair
from dlcli.nn.from_config import build_model
from dlcli.nn.layers import Conv2D
from dlcli.train.losses import LOSS_ALIASES, LossSpec

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))

MINIMAL = """\
data: {dataset: moons}
model:
  input_shape: [2]
  layers:
    - {type: Dense, units: 1, activation: sigmoid}
"""


def load(text: str, *overrides: str) -> Config:
    return load_config_text(text, list(overrides), "test.yaml")


def issues(text: str, *overrides: str) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as info:
        cfg = load(text, *overrides)
        build_model(cfg)
    return info.value.issues


# -- schema: defaults, aliases, shorthands --------------------------------------------------------
def test_defaults_are_kerass() -> None:
    cfg = load(MINIMAL)
    assert (cfg.name, cfg.seed, cfg.device) == ("experiment", 42, "cpu")
    assert cfg.loss == "categorical_crossentropy" and cfg.metrics == []
    assert cfg.optimizer.type == "adam" and cfg.optimizer.learning_rate == 0.001
    assert (cfg.optimizer.beta_1, cfg.optimizer.beta_2, cfg.optimizer.epsilon) == (0.9, 0.999, 1e-7)
    assert cfg.training.epochs == 10 and cfg.training.lr_schedule.type == "constant"
    assert cfg.training.early_stopping is None
    d = cfg.data
    assert (d.batch_size, d.shuffle, d.normalize, d.validation_split) == (32, True, "none", 0.0)
    dense = cfg.model.layers[0]
    assert (dense.use_bias, dense.kernel_initializer, dense.bias_initializer) == (
        True, "glorot_uniform", "zeros")
    assert SGDConfig().learning_rate == 0.01 and AdamWConfig().weight_decay == 0.004
    bn = BatchNormConfig(type="BatchNorm")
    assert (bn.momentum, bn.epsilon, bn.center, bn.scale) == (0.99, 1e-3, True, True)
    pool = MaxPool2DConfig(type="MaxPool2D")
    assert (pool.pool_size, pool.strides, pool.padding) == (2, None, "valid")


def test_early_stopping_defaults() -> None:
    text = MINIMAL.replace("moons}", "moons, validation_split: 0.2}")
    es = load(text + "training: {early_stopping: {}}\n").training.early_stopping
    assert (es.monitor, es.mode, es.patience, es.min_delta, es.restore_best_weights) == (
        "val_loss", "auto", 0, 0.0, False)


@pytest.mark.parametrize("alias,canonical", [
    ("MaxPool2D", "MaxPool2D"), ("MaxPooling2D", "MaxPool2D"), ("AvgPool2D", "AvgPool2D"),
    ("AveragePooling2D", "AvgPool2D"), ("BatchNorm", "BatchNorm"),
    ("BatchNormalization", "BatchNorm"), ("GlobalAvgPool2D", "GlobalAveragePooling2D"),
])
def test_layer_type_aliases(alias: str, canonical: str) -> None:
    text = MINIMAL.replace("[2]", "[4, 4, 1]").replace(
        "    - {type: Dense",
        f"    - {{type: {alias}}}\n    - {{type: Flatten}}\n    - {{type: Dense")
    if canonical == "GlobalAveragePooling2D":
        text = text.replace("    - {type: Flatten}\n", "")
    cfg = load(text)
    assert cfg.model.layers[0].layer_type == canonical
    assert type(build_model(cfg).layers[0]).__name__ == canonical


@pytest.mark.parametrize("spec", ["adam", "Adam", "ADAM", "{type: Adam}", "{type: aDaM, lr: 0.5}"])
def test_optimizer_names_are_case_insensitive_and_lr_is_accepted(spec: str) -> None:
    cfg = load(MINIMAL + f"optimizer: {spec}\n")
    assert cfg.optimizer.type == "adam"
    assert cfg.optimizer.learning_rate == (0.5 if "lr" in spec else 0.001)


def test_lr_and_learning_rate_together_is_an_error() -> None:
    (issue,) = issues(MINIMAL + "optimizer: {type: sgd, lr: 0.1, learning_rate: 0.2}\n")
    assert issue.path == "optimizer" and "not both" in issue.message


@pytest.mark.parametrize("value,expected", [("3", 3), ("[3, 5]", (3, 5)), ("[2, 1]", (2, 1))])
def test_kernel_size_int_or_pair(value: str, expected: object) -> None:
    text = MINIMAL.replace("[2]", "[8, 8, 1]").replace(
        "    - {type: Dense",
        f"    - {{type: Conv2D, filters: 2, kernel_size: {value}, strides: {value}}}\n"
        "    - {type: Flatten}\n    - {type: Dense")
    cfg = load(text)
    assert cfg.model.layers[0].kernel_size == expected == cfg.model.layers[0].strides


@pytest.mark.parametrize("value", ["0", "[3]", "[3, 3, 3]", "'3'", "true", "[3, -1]", "2.5"])
def test_kernel_size_rejects(value: str) -> None:
    text = MINIMAL.replace("[2]", "[8, 8, 1]").replace(
        "    - {type: Dense", f"    - {{type: Conv2D, filters: 2, kernel_size: {value}}}\n"
        "    - {type: Flatten}\n    - {type: Dense")
    (issue,) = issues(text)
    assert issue.path == "model.layers[0].kernel_size"
    assert "pair" in issue.message and issue.line == 5


@pytest.mark.parametrize("value", [3, [3, 5], (2, 1), 0, [3], [3, 3, 3], "3", "33", True,
                                   [3, -1], 2.5, [2.0, 2], {1: 2, 3: 4}, None])
def test_schema_layers_and_ops_share_one_int_or_pair_rule(value: object) -> None:
    # one parser: the schema accepts exactly what the layer and the op accept
    def accepted(make: object) -> bool:
        try:
            make()
        except ValueError:  # a pydantic ValidationError is one too
            return False
        return True

    by_op = accepted(lambda: pair(value, "kernel_size"))
    by_layer = accepted(lambda: Conv2D(1, value))
    by_schema = accepted(lambda: Conv2DConfig(type="Conv2D", filters=1, kernel_size=value))
    assert by_op == by_layer == by_schema == (value in (3, [3, 5], (2, 1))), value


@pytest.mark.parametrize("reg,l1,l2", [("{l1: 0.01}", 0.01, 0.0), ("{l2: 1e-4}", 0.0, 1e-4),
                                       ("{l1: 1, l2: 2}", 1.0, 2.0)])
def test_regularizers(reg: str, l1: float, l2: float) -> None:
    cfg = load(MINIMAL.replace("sigmoid}", f"sigmoid, kernel_regularizer: {reg}}}"))
    assert cfg.model.layers[0].layer_kwargs()["kernel_regularizer"] == {"l1": l1, "l2": l2}
    model = build_model(cfg)
    assert model.regularization_loss() is not None


def test_empty_regularizer_is_an_error() -> None:
    (issue,) = issues(MINIMAL.replace("sigmoid}", "sigmoid, kernel_regularizer: {}}"))
    assert issue.path == "model.layers[0].kernel_regularizer" and "l1 and/or l2" in issue.message


def test_loss_forms_and_aliases() -> None:
    assert load(MINIMAL + "loss: mse\n").loss == "mean_squared_error"
    cfg = load(MINIMAL + "loss: {type: huber}\n")
    assert isinstance(cfg.loss, LossConfig) and cfg.loss.delta == 1.0
    assert cfg.loss_name == "huber"
    cfg = load(MINIMAL.replace("sigmoid", "linear") + "loss: {type: mae, from_logits: false}\n")
    assert cfg.loss_name == "mean_absolute_error"
    (issue,) = issues(MINIMAL + "loss: {type: mse, delta: 2.0}\n")
    assert issue.path == "loss" and "huber" in issue.message


@pytest.mark.parametrize("alias", sorted(LOSS_ALIASES))
def test_the_config_and_the_trainer_read_one_alias_table(alias: str) -> None:
    name = LOSS_ALIASES[alias]
    text = MINIMAL.replace("sigmoid", "linear")
    assert load(text + f"loss: {alias}\n").loss == name == LossSpec.from_config(alias).name
    assert load(text + f"loss: {{type: {alias}}}\n").loss_name == name
    assert LossSpec.from_config({"type": alias}).name == name


def test_metric_forms() -> None:
    cfg = load(MINIMAL + "metrics: [accuracy, {type: top_k_accuracy, k: 3}]\n")
    # plain data, as the contract says: list[str | {type: top_k_accuracy, k: int}]
    assert cfg.metrics == ["accuracy", {"type": "top_k_accuracy", "k": 3}]
    assert load(MINIMAL + "metrics: [{type: top_k_accuracy}]\n").metrics == [
        {"type": "top_k_accuracy", "k": TopKAccuracyConfig(type="top_k_accuracy").k}]
    assert load(MINIMAL + "metrics: [top_k_accuracy]\n").metric_names == ["top_k_accuracy"]
    (issue,) = issues(MINIMAL + "metrics: [accuracy, accuracy]\n")
    assert issue.path == "metrics[1]" and "twice" in issue.message


def test_yaml_floats_without_a_dot() -> None:
    cfg = load(MINIMAL + "optimizer: {type: adam, learning_rate: 1e-4, epsilon: 1E-8}\n")
    assert cfg.optimizer.learning_rate == 1e-4 and cfg.optimizer.epsilon == 1e-8


def test_strict_scalars() -> None:
    text = MINIMAL.replace("units: 1", "units: '1'").replace("moons}", "moons, shuffle: 'yes'}")
    paths = {i.path: i for i in issues(text + "seed: true\n")}
    assert "expected an integer, got '1'" in paths["model.layers[0].units"].message
    assert "expected an integer, got true" in paths["seed"].message
    assert "expected true or false, got 'yes'" in paths["data.shuffle"].message


def test_data_needs_exactly_one_source() -> None:
    (issue,) = issues(MINIMAL.replace("{dataset: moons}", "{dataset: moons, train: a.csv}"))
    assert issue.path == "data" and "exactly one" in issue.message
    (issue,) = issues(MINIMAL.replace("{dataset: moons}", "{batch_size: 3}"))
    assert issue.path == "data" and issue.line == 1
    cfg = load(MINIMAL.replace("{dataset: moons}", "{train: {path: a.csv, target: label}, "
                               "validation: b.csv}"))
    assert cfg.data.train.target == "label" and cfg.data.validation == "b.csv"
    assert cfg.data.has_validation


# -- cross-section checks -------------------------------------------------------------------------
def test_monitor_names_follow_validation_data() -> None:
    cfg = load(MINIMAL + "metrics: [accuracy, {type: top_k_accuracy, k: 2}]\n")
    assert cfg.monitor_names() == ["loss", "accuracy", "top_k_accuracy"]
    cfg = load(MINIMAL.replace("moons}", "moons, validation_split: 0.1}") + "metrics: [f1]\n")
    assert cfg.monitor_names() == ["loss", "f1", "val_loss", "val_f1"]


def test_unknown_monitor_lists_valid_names() -> None:
    text = MINIMAL.replace("moons}", "moons, validation_split: 0.1}") + (
        "metrics: [accuracy]\ntraining:\n  early_stopping: {monitor: val_acuracy}\n")
    (issue,) = issues(text)
    assert issue.path == "training.early_stopping.monitor" and issue.line == 8
    assert "loss, accuracy, val_loss, val_accuracy" in issue.message
    assert issue.suggestion == "val_accuracy"


def test_val_monitor_without_validation_data() -> None:
    (issue,) = issues(MINIMAL + "training: {early_stopping: {patience: 2}}\n")
    assert issue.path == "training.early_stopping.monitor"
    assert "validation_split" in issue.message


def test_reduce_on_plateau_monitor_is_checked() -> None:
    cfg = load(MINIMAL + "training: {lr_schedule: {type: reduce_on_plateau, monitor: loss}}\n")
    assert isinstance(cfg.training.lr_schedule, ReduceOnPlateauSchedule)
    (issue,) = issues(MINIMAL + "training: {lr_schedule: {type: reduce_on_plateau}}\n")
    assert issue.path == "training.lr_schedule.monitor"


def test_duplicate_layer_names_and_from_logits_with_softmax() -> None:
    text = MINIMAL.replace("    - {type: Dense, units: 1, activation: sigmoid}",
                           "    - {type: Dense, units: 4, name: a}\n"
                           "    - {type: Dense, units: 1, name: a, activation: sigmoid}")
    (issue,) = issues(text)
    assert issue.path == "model.layers[1].name" and issue.line == 6
    (issue,) = issues(MINIMAL + "loss: {type: binary_crossentropy, from_logits: true}\n")
    assert issue.path == "loss.from_logits" and "sigmoid" in issue.message


# -- YAML and positions ---------------------------------------------------------------------------
def test_positions_of_keys_and_items() -> None:
    data, source = parse_yaml("a: 1\nb:\n  - x: 2\n  -   y: 3\n", "f.yaml")
    assert data == {"a": 1, "b": [{"x": 2}, {"y": 3}]}
    assert source.positions[("a",)] == (1, 1)
    assert source.positions[("b", 1)] == (4, 7)
    assert source.positions[("b", 1, "y")] == (4, 7)
    assert source.locate(("b", 0, "missing")) == (3, 5, None)


def test_merge_keys_are_resolved() -> None:
    data, _ = parse_yaml("base: &b {units: 3}\nlayer: {<<: *b, type: Dense}\n")
    assert data["layer"] == {"units": 3, "type": "Dense"}


@pytest.mark.parametrize("text,fragment,line", [
    ("", "empty", None), ("# only a comment\n", "empty", None),
    ("- a\n- b\n", "got a list", 1), ("3\n", "got a single value", 1),
    ("a: [1, 2\nb: 3\n", "invalid YAML", 2), ("a: 1\na: 2\n", "duplicate key 'a'", 2),
    ("a: 1\n? [x]\n: 2\n", "keys must be names", 2), ("a: 1\n---\nb: 2\n", "invalid YAML", 2),
    ("a: !!python/object:os.system {}\n", "invalid YAML", 1),
])
def test_file_level_errors(text: str, fragment: str, line: int | None) -> None:
    with pytest.raises(ConfigError) as info:
        parse_yaml(text, "f.yaml")
    (issue,) = info.value.issues
    assert fragment in issue.message and issue.line == line
    assert "\n" not in str(info.value)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="directory"):
        load_config(tmp_path)


def test_all_errors_of_a_file_at_once() -> None:
    text = MINIMAL.replace("units: 1", "units: 0").replace("sigmoid", "sigmod") + "sed: 1\n"
    found = issues(text)
    assert [i.path for i in found] == ["model.layers[0].units", "model.layers[0].activation",
                                       "sed"]
    assert [i.line for i in found] == [5, 5, 6]
    assert found[1].suggestion == "sigmoid" and found[2].suggestion == "seed"
    rendered = str(ConfigError(found, "c.yaml"))
    assert rendered.startswith("c.yaml: 3 errors\n") and "c.yaml:6:1: sed: unknown key" in rendered


def test_issue_rendering_and_helpers() -> None:
    assert format_path(("model", "layers", 3, "kernel_size")) == "model.layers[3].kernel_size"
    assert closest("Relu", ["relu", "elu"]) == "relu" and closest("zzz", ["relu"]) is None
    issue = ConfigIssue("a.b", "bad", 3, 4, "c")
    assert issue.render("f.yaml") == "f.yaml:3:4: a.b: bad; did you mean 'c'?"
    assert ConfigIssue("x", "bad", origin="--set x=1").render("f") == "--set x=1: x: bad"
    source = SourceMap("f", {("a",): (2, 1)}, {("a", "b"): "--set a.b=1"})
    assert source.locate(("a", "b", "c")) == (None, None, "--set a.b=1")
    assert source.locate(("a", "z")) == (2, 1, None)


# -- --set overrides ------------------------------------------------------------------------------
@pytest.mark.parametrize("key,parts", [
    ("a", ["a"]), ("optimizer.learning_rate", ["optimizer", "learning_rate"]),
    ("model.layers[7].rate", ["model", "layers", 7, "rate"]), ("a[0][-1]", ["a", 0, -1]),
    ("a..b", None), ("[0]", None), ("a.b[x]", None), ("", None),
])
def test_parse_key(key: str, parts: list[str | int] | None) -> None:
    assert parse_key(key) == parts


def test_overrides() -> None:
    cfg = load(MINIMAL, "optimizer.learning_rate=0.01", "model.layers[0].units=3",
               "model.layers[-1].activation=softmax", "training.early_stopping.monitor=loss",
               "metrics=[accuracy, f1]", "name=run-one", "model.input_shape=[3]")
    assert cfg.optimizer.learning_rate == 0.01 and cfg.model.layers[0].units == 3
    assert cfg.model.layers[0].activation == "softmax" and cfg.metrics == ["accuracy", "f1"]
    assert cfg.training.early_stopping.monitor == "loss" and cfg.name == "run-one"
    assert cfg.model.input_shape == [3]
    # learning_rate replaces an lr written in the file, and the other way round
    text = MINIMAL + "optimizer: {type: sgd, lr: 0.5}\n"
    assert load(text, "optimizer.learning_rate=0.2").optimizer.learning_rate == 0.2
    assert load(text, "optimizer.lr=0.3").optimizer.learning_rate == 0.3


@pytest.mark.parametrize("override,path,fragment", [
    ("nonsense", "", "KEY=VALUE"),
    ("model.layers[5].units=3", "model.layers", "has 1 items"),
    ("model.layers.x=3", "model.layers", "not a mapping"),
    ("loss.delta=3", "loss", "not a mapping"),
    ("model.input_shape[0][1]=3", "model.input_shape[0]", "not a list"),
    ("optimizer.learnig_rate=0.1", "optimizer.learnig_rate", "unknown key"),
    ("model.layers[0].units=[1", "model.layers[0].units", "cannot parse"),
    ("training.extra[0]=1", "training.extra", "is not set"),
])
def test_override_errors_name_the_override(override: str, path: str, fragment: str) -> None:
    found = issues(MINIMAL + "loss: mse\n", override)
    issue = next(i for i in found if i.origin == f"--set {override}")
    assert issue.path == path and fragment in issue.message and issue.line is None


# -- consistency with the layers and optimizers ------------------------------------------------
def test_names_match_the_implementations() -> None:
    from dlcli.core.ops.activations import ACTIVATIONS as IMPL_ACTIVATIONS
    from dlcli.nn.initializers import INITIALIZERS as IMPL_INITIALIZERS
    from dlcli.nn.layers import LAYERS

    assert set(ACTIVATIONS) == set(IMPL_ACTIVATIONS)
    assert set(INITIALIZERS) == set(IMPL_INITIALIZERS)
    assert {m.layer_type for m in LAYER_CONFIGS.values()} == set(LAYERS)


def test_layer_fields_are_constructor_arguments() -> None:
    import inspect

    from dlcli.nn.layers import LAYERS

    for model in set(LAYER_CONFIGS.values()):
        params = inspect.signature(LAYERS[model.layer_type].__init__).parameters
        fields = set(model.model_fields) - {"type", "trainable"}  # trainable: set after
        assert fields == set(params) - {"self"}, model.layer_type


@pytest.mark.parametrize("spec", ["constant", "{type: step, step_size: 2}",
                                  "{type: exponential, decay_rate: 0.5}", "cosine",
                                  "{type: reduce_on_plateau, monitor: loss}"])
def test_schedule_configs_build_schedules(spec: str) -> None:
    from dlcli.train.schedules import make_schedule

    cfg = load(MINIMAL + f"training: {{lr_schedule: {spec}}}\n")
    make_schedule(cfg.training.lr_schedule.model_dump(), 0.1, cfg.training.epochs)


def test_metric_configs_are_what_the_metrics_code_reads() -> None:
    from dlcli.train.metrics import parse_metric

    cfg = load(MINIMAL + "metrics: [accuracy, {type: top_k_accuracy, k: 2}, r2]\n")
    assert [parse_metric(m) for m in cfg.metrics] == [
        ("accuracy", {}), ("top_k_accuracy", {"k": 2}), ("r2", {})]


def test_optimizer_fields_and_defaults_match_the_optimizers() -> None:
    from dlcli.train.optimizers import optimizer_fields

    for name, model in OPTIMIZER_CONFIGS.items():
        fields = {k: v for k, v in model().model_dump().items() if k != "type"}
        assert fields == optimizer_fields(name), name


# -- models built from configs: Keras parameter counts --------------------------------------------
@pytest.mark.parametrize("name,total,non_trainable,n_layers", [
    # Flatten; 784*256+256; 256*128+128; 128*10+10
    ("fashion_mnist_mlp.yaml", 200_960 + 32_896 + 1_290, 0, 6),
    # 3*3*1*32+32; BN 4*32 (2*32 moving); 3*3*32*64+64; 7*7*64*128+128; 128*10+10
    ("fashion_mnist_cnn.yaml", 320 + 128 + 18_496 + 401_536 + 1_290, 64, 9),
    # 2*16+16; 16*16+16; 16+1
    ("binary_moons.yaml", 48 + 272 + 17, 0, 3),
    # 8*64+64; 64*32+32; 32+1
    ("regression.yaml", 576 + 2_080 + 33, 0, 3),
])
def test_parameter_counts_of_the_example_configs(name: str, total: int, non_trainable: int,
                                                 n_layers: int) -> None:
    model = build_model(load_config(ROOT / "configs" / name))
    assert len(model.layers) == n_layers
    assert model.count_params() == total
    assert sum(w.size for w in model.non_trainable_weights) == non_trainable


def test_parameter_counts_of_strides_valid_padding_and_no_bias() -> None:
    text = """\
data: {dataset: blobs}
model:
  input_shape: [32, 32, 3]
  layers:
    - {type: Conv2D, filters: 16, kernel_size: 5, strides: 2}            # 5*5*3*16+16, (14,14,16)
    - {type: BatchNormalization}                                          # 4*16, 2*16 moving
    - {type: AveragePooling2D}                                            # (7, 7, 16)
    - {type: Conv2D, filters: 8, kernel_size: [3, 1], padding: same, use_bias: false}  # 3*1*16*8
    - {type: GlobalAveragePooling2D}                                      # (8,)
    - {type: Dense, units: 4, activation: softmax}                        # 8*4+4
"""
    model = build_model(load(text))
    assert [r["output_shape"] for r in model.summary_rows()] == [
        (14, 14, 16), (14, 14, 16), (7, 7, 16), (7, 7, 8), (8,), (4,)]
    assert [r["params"] for r in model.summary_rows()] == [1216, 64, 0, 384, 0, 36]
    assert sum(w.size for w in model.non_trainable_weights) == 32


def test_build_model_uses_the_seed_and_name() -> None:
    a = build_model(load(MINIMAL + "name: a\nseed: 3\n"))
    b = build_model(load(MINIMAL + "seed: 3\n"))
    c = build_model(load(MINIMAL + "seed: 4\n"))
    assert a.name == "a"
    wa, wb, wc = a.get_weights(), b.get_weights(), c.get_weights()
    assert all((wa[k] == wb[k]).all() for k in wa)
    assert any((wa[k] != wc[k]).any() for k in wa)


@pytest.mark.parametrize("input_shape,layers,index,fragment", [
    ("[8, 8, 1]", ["{type: Conv2D, filters: 2, kernel_size: 9}"], 0, "(9, 9)"),
    ("[8, 8, 1]", ["{type: MaxPool2D, pool_size: 3}", "{type: MaxPool2D, pool_size: 3}"], 1,
     "(2, 2, 1)"),
    ("[16]", ["{type: Conv2D, filters: 2, kernel_size: 3}"], 0, "(16,)"),
    ("[16]", ["{type: MaxPool2D}"], 0, "(16,)"),
    ("[16]", ["{type: Flatten}"], 0, "already flat"),
    ("[4, 4, 2]", ["{type: Flatten}", "{type: Flatten}"], 1, "already flat"),
    ("[4, 4, 2]", ["{type: GlobalAveragePooling2D}", "{type: GlobalAvgPool2D}"], 1, "(2,)"),
])
def test_shape_errors_point_at_the_layer(input_shape: str, layers: list[str], index: int,
                                         fragment: str) -> None:
    items = "".join(f"    - {spec}\n" for spec in layers)
    text = f"data: {{dataset: blobs}}\nmodel:\n  input_shape: {input_shape}\n  layers:\n{items}"
    (issue,) = issues(text)
    assert issue.path == f"model.layers[{index}]" and issue.line == 5 + index
    assert fragment in issue.message and f"layer {index} (" in issue.message


# -- resolved YAML, schema, example configs ------------------------------------------------------
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_resolved_yaml_round_trips(path: Path) -> None:
    cfg = load_config(path, ["optimizer=rmsprop"])
    text = resolved_yaml(cfg)
    again = load(text)
    assert again.model_dump() == cfg.model_dump()
    data = yaml.safe_load(text)
    assert data["optimizer"]["epsilon"] == 1e-7 and "lr_schedule" in data["training"]
    assert all(layer["type"] in LAYER_CONFIGS for layer in data["model"]["layers"])


def test_committed_schema_is_up_to_date() -> None:
    from dlcli.cli.schema import schema_text

    committed = (ROOT / "configs" / "dlcli.schema.json").read_text()
    assert committed == schema_text(), "regenerate with: dlcli schema -o configs/dlcli.schema.json"


def test_schema_describes_the_config() -> None:
    schema = config_json_schema()
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"data", "model"}
    assert "Conv2DConfig" in schema["$defs"] and "lr" in schema["$defs"]["AdamConfig"]["properties"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_example_configs(path: Path) -> None:
    lines = path.read_text().splitlines()
    assert lines[0] == "# yaml-language-server: $schema=./dlcli.schema.json"
    assert lines[1].startswith("# ") and len(lines[1]) > 20  # says what the example shows
    build_model(load_config(path))
    schema = json.loads((ROOT / "configs" / "dlcli.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(yaml.load(path.read_text(),
                                                               Loader=yaml.SafeLoader))


def test_example_configs_exist() -> None:
    assert {p.name for p in CONFIGS} >= {"fashion_mnist_mlp.yaml", "fashion_mnist_cnn.yaml",
                                         "binary_moons.yaml", "regression.yaml"}


def test_conv_config_rejects_bad_padding_with_suggestion() -> None:
    text = MINIMAL.replace("[2]", "[8, 8, 1]").replace(
        "    - {type: Dense", "    - {type: Conv2D, filters: 2, kernel_size: 3, padding: Same}\n"
        "    - {type: Flatten}\n    - {type: Dense")
    (issue,) = issues(text)
    assert issue.path == "model.layers[0].padding" and issue.suggestion == "same"
    assert Conv2DConfig(type="Conv2D", filters=1, kernel_size=[1, 2]).kernel_size == (1, 2)
