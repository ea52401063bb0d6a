"""Hostile or broken configs end in one `error:` line and exit code 2, bounded in time and memory.

The bombs run `dlcli validate` in a subprocess whose address space is capped at 1 GiB, so a
check that expands, recurses or allocates before refusing fails the test instead of the machine.
"""

from __future__ import annotations

import contextlib
import copy
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlcli.cli.main import main
from dlcli.config import ConfigError, load_config_text
from dlcli.config.load import MAX_DEPTH, MAX_NODES, parse_value, parse_yaml
from dlcli.config.schema import ModelConfig
from dlcli.nn.from_config import MAX_WEIGHT_BYTES, build_model, plan_model

ROOT = Path(__file__).resolve().parents[1]

BASE = """\
name: hostile
data: {dataset: moons, batch_size: 8}
model:
  input_shape: [2]
  layers:
    - {type: Dense, units: 4, activation: relu}
    - {type: Dense, units: 2, activation: softmax}
"""


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))


def run_capped(tmp_path: Path, text: str | bytes, *args: str, command: str = "validate"
               ) -> tuple[int, str, str, float]:
    """`dlcli COMMAND FILE ARGS` under a 1 GiB address-space cap: (rc, stdout, stderr, seconds)."""
    path = tmp_path / "config.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "dlcli", command, str(path), *args], capture_output=True,
        text=True, preexec_fn=_cap_memory, timeout=60, env=env, cwd=ROOT,
    )
    return result.returncode, result.stdout, result.stderr, time.monotonic() - start


def assert_one_error(rc: int, out: str, err: str, seconds: float, *fragments: str) -> str:
    """Exit code 2, exactly one `error:` line on stderr, no traceback; returns that line."""
    assert rc == 2, (rc, out, err)
    assert "Traceback" not in out + err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    # generous: the process itself takes about a second to import; the bombs would take
    # minutes (or the memory cap) without the limits
    assert seconds < 15, seconds
    return lines[0]


def alias_bomb(levels: int = 9, fanout: int = 10) -> str:
    """Billion laughs: each anchor lists the previous one `fanout` times."""
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * fanout) + "]")
    return "\n".join(lines) + "\n"


def merge_bomb(levels: int = 40) -> str:
    """Merge keys that merge the previous mapping twice: PyYAML's flatten doubles per level."""
    lines = ["m0: &m0 {k0: 1}"]
    for i in range(1, levels + 1):
        lines.append(f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}], k{i}: 1}}")
    return "\n".join(lines) + "\n"


def mapping_bomb(levels: int = 40) -> str:
    lines = ["m0: &m0 {k: 1}"]
    for i in range(1, levels + 1):
        lines.append(f"m{i}: &m{i} {{a: *m{i - 1}, b: *m{i - 1}}}")
    return "\n".join(lines) + "\n"


def deep_alias_chain(links: int = 50, depth: int = 60) -> str:
    """Each anchor nests the previous one `depth` levels deeper: shallow text, deep value."""
    lines = [f"a0: &a0 {'[' * depth}{']' * depth}"]
    for i in range(1, links):
        lines.append(f"a{i}: &a{i} {'[' * depth}*a{i - 1}{']' * depth}")
    return "\n".join(lines) + "\n"


# -- YAML bombs, through the CLI in a memory-capped process ----------------------------------------
@pytest.mark.parametrize("text,fragment", [
    (alias_bomb(), f"more than {MAX_NODES:,} values"),
    (merge_bomb(), f"more than {MAX_NODES:,} values"),
    (mapping_bomb(), f"more than {MAX_NODES:,} values"),
    ("a: [" + "1, " * 200_000 + "]\n", f"more than {MAX_NODES:,} values"),
    ("a: &a [*a]\n", "recursive alias"),
    ("a: &a {b: *a}\n", "recursive alias"),
    ("a: &a {<<: *a}\n", "recursive alias"),
    ("[" * 100_000 + "\n", f"nested more than {MAX_DEPTH} levels"),
    ("{a: " * 50_000 + "\n", f"nested more than {MAX_DEPTH} levels"),
    ("".join("  " * i + f"k{i}:\n" for i in range(150)), f"nested more than {MAX_DEPTH} levels"),
    (deep_alias_chain(), f"nest more than {MAX_DEPTH} levels"),
    ("name: a\x00b\n" + BASE.split("\n", 1)[1], "NUL character"),
    ("name: a\x1bb\n" + BASE.split("\n", 1)[1], "#x001b"),
], ids=["alias-bomb", "merge-bomb", "mapping-bomb", "long-list", "recursive-seq", "recursive-map",
        "recursive-merge", "deep-flow", "deep-flow-map", "deep-block", "deep-alias-chain",
        "nul", "escape-char"])
def test_bombs_are_one_error(tmp_path: Path, text: str, fragment: str) -> None:
    assert_one_error(*run_capped(tmp_path, text), fragment)


@pytest.mark.parametrize("value,fragment", [
    ("{" + alias_bomb().strip().replace("\n", ", ") + "}", f"more than {MAX_NODES:,} values"),
    ("&a [*a]", "recursive alias"),
    ("[" * 100_000, f"nested more than {MAX_DEPTH} levels"),
    ("9" * 5000, "out of range"),
], ids=["alias-bomb", "recursive", "deep", "long-int"])
def test_set_values_have_the_same_limits(tmp_path: Path, value: str, fragment: str) -> None:
    line = assert_one_error(*run_capped(tmp_path, BASE, "--set", f"seed={value}"), fragment)
    assert "seed" in line and len(line) < 400  # the 100 000-character value is not echoed


def test_nul_character_has_its_line_and_column() -> None:
    with pytest.raises(ConfigError) as info:
        parse_yaml("a: 1\nb: x\x00y\n", "f.yaml")
    (issue,) = info.value.issues
    assert (issue.line, issue.column) == (2, 5) and "NUL" in issue.message


def test_nesting_up_to_the_limit_is_read() -> None:
    n = MAX_DEPTH - 1  # lists inside the top-level mapping: MAX_DEPTH levels in all
    data, _ = parse_yaml("a: " + "[" * n + "]" * n + "\n")
    value = data["a"]
    for _ in range(n - 1):
        (value,) = value
    assert value == []
    with pytest.raises(ConfigError, match="nested more than"):
        parse_yaml("a: " + "[" * (n + 1) + "]" * (n + 1) + "\n")


def test_a_recursion_error_in_the_parser_is_one_error() -> None:
    # far below the stack PyYAML needs for MAX_DEPTH levels: the RecursionError must not escape
    limit = sys.getrecursionlimit()
    frames = len(_stack())
    sys.setrecursionlimit(frames + 60)
    try:
        with pytest.raises(ConfigError, match="nested"):
            parse_yaml("a: " + "[" * 80 + "]" * 80 + "\n")
    finally:
        sys.setrecursionlimit(limit)


def _stack() -> list[object]:
    import inspect

    return inspect.stack(0)


def test_aliases_that_stay_small_are_expanded() -> None:
    data, _ = parse_yaml("a: &a [1, 2]\nb: [*a, *a]\nc: &c {x: 1}\nd: {<<: *c, x: 2, y: 3}\n")
    assert data == {"a": [1, 2], "b": [[1, 2], [1, 2]], "c": {"x": 1}, "d": {"x": 2, "y": 3}}
    data, _ = parse_yaml("p: &p {u: 1, v: 1}\nq: &q {v: 2, w: 2}\nr: {<<: [*p, *q]}\n")
    assert data["r"] == {"u": 1, "v": 1, "w": 2}  # the first merged mapping wins
    with pytest.raises(ConfigError, match="duplicate key 'x'"):
        parse_yaml("c: &c {x: 1}\nd: {<<: *c, x: 2, x: 3}\n")
    with pytest.raises(ConfigError, match="merge key"):
        parse_yaml("d: {<<: [1, 2]}\n")


def test_huge_and_endless_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(BASE + "# " + "x" * 2**20 + "\n")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2 and "longer than 1 MiB" in result.output
    if os.path.exists("/dev/zero"):  # a device that never ends is read only up to the limit
        result = CliRunner().invoke(main, ["validate", "/dev/zero"])
        assert result.exit_code == 2 and result.output.startswith("error: ")


# -- numbers out of range --------------------------------------------------------------------------
def cli(text: str, *args: str, command: str = "validate") -> tuple[int, str]:
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):  # messages say c.yaml
        Path("c.yaml").write_text(text, encoding="utf-8")
        result = CliRunner().invoke(main, [command, "c.yaml", *args])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


def one_error(text: str, *args: str, command: str = "validate") -> str:
    code, output = cli(text, *args, command=command)
    assert code == 2 and output.startswith("error: "), output
    assert len(output.strip().splitlines()) == 1, output
    return output


@pytest.mark.parametrize("override,path,fragment", [
    ("seed=" + "9" * 5000, "seed", "out of range"),
    ("seed=" + "9" * 30, "seed", "<= 9223372036854775807"),
    ("model.layers[0].units=1e26", "model.layers[0].units", "expected an integer, got 1e+26"),
    ("model.layers[0].units=" + "1" + "0" * 26, "model.layers[0].units", "<= 2147483647"),
    ("model.input_shape=[" + "1" + "0" * 30 + "]", "model.input_shape[0]", "<= 2147483647"),
    ("training.epochs=" + "9" * 40, "training.epochs", "<= 2147483647"),
    ("data.batch_size=1e30", "data.batch_size", "expected an integer"),
    ("model.layers[0]={type: Conv2D, filters: " + "9" * 20 + ", kernel_size: 3}",
     "model.layers[0].filters", "<= 2147483647"),
    ("model.layers[0]={type: Conv2D, filters: 2, kernel_size: " + "9" * 20 + "}",
     "model.layers[0].kernel_size", "at most 2147483647"),
    ("name=0x" + "f" * 90, "name", "expected a string, got 2348"),  # 109 digits, shortened
    ("name=2001-13-45", "name", "as a date"),  # a date that is no date: a ValueError inside PyYAML
    ("optimizer.learning_rate=.inf", "optimizer.learning_rate", "finite"),
    ("data.noise=.nan", "data.noise", "finite"),
])
def test_out_of_range_numbers_name_their_key(override: str, path: str, fragment: str) -> None:
    output = one_error(BASE, "--set", override)
    assert f": {path}: " in output and fragment in output, output
    assert len(output) < 400, output


def test_a_long_integer_in_the_file_is_located() -> None:
    text = BASE + "seed: " + "9" * 5000 + "\n"
    output = one_error(text)
    assert "c.yaml:8:7: seed: the integer 99999" in output and "out of range" in output


# -- models too large for memory -------------------------------------------------------------------
HUGE_DENSE = """\
name: huge
data: {dataset: moons, batch_size: 8}
model:
  input_shape: [100000]
  layers:
    - {type: Dense, units: 100000, activation: relu}
    - {type: Dense, units: 100000, activation: relu}
    - {type: Dense, units: 2, activation: softmax}
"""


@pytest.mark.parametrize("command", ["validate", "summary"])
def test_a_huge_model_is_refused_without_allocating(tmp_path: Path, command: str) -> None:
    line = assert_one_error(*run_capped(tmp_path, HUGE_DENSE, command=command),
                            "model.layers[0]", "37.3 GiB", "8.0 GiB limit")
    assert ":6:7: " in line  # the layer's line and column


def test_a_large_model_validates_without_allocating(tmp_path: Path) -> None:
    # 1.6 GB of float32 weights: under the limit, over the 1 GiB cap of the process, so only a
    # check that never builds the weights can say it is valid
    text = HUGE_DENSE.replace("100000", "20000")
    text = text.replace("    - {type: Dense, units: 20000, activation: relu}\n", "", 1)
    rc, out, err, _ = run_capped(tmp_path, text)
    assert rc == 0, err
    assert "400,060,002 parameters" in out


def test_the_limit_names_the_layer_that_crosses_it() -> None:
    # each layer alone fits; the third takes the total past the limit
    units = 30_000  # 900 M parameters (3.4 GiB) per square layer
    model = ModelConfig.model_validate({"input_shape": [units], "layers": [
        {"type": "Dense", "units": units}, {"type": "Dense", "units": units},
        {"type": "Dense", "units": units}, {"type": "Dense", "units": 2}]})
    plan = plan_model(model)
    ((loc, message),) = plan.problems
    assert loc == ("model", "layers", 2) and "over the 8.0 GiB limit" in message
    assert sum(layer.params for layer in plan.layers) * 4 > MAX_WEIGHT_BYTES


def test_a_shape_error_points_at_its_layer() -> None:
    # the failing layer is neither the first nor the last, so a wrong index shows
    model = ModelConfig.model_validate({"input_shape": [2], "layers": [
        {"type": "Dense", "units": 4}, {"type": "Dense", "units": 4}, {"type": "Flatten"},
        {"type": "Dense", "units": 2}]})
    ((loc, message),) = plan_model(model).problems
    assert loc == ("model", "layers", 2)
    assert message == "layer 2 (Flatten): the input (4,) is already flat"


def test_huge_activations_and_inputs_are_refused() -> None:
    conv = {"type": "Conv2D", "filters": 64, "kernel_size": 3, "padding": "same"}
    model = ModelConfig.model_validate({"input_shape": [4096, 4096, 3], "layers": [conv]})
    ((loc, message),) = plan_model(model, batch_size=16).problems
    assert loc == ("model", "layers", 0) and "data.batch_size" in message
    assert plan_model(model, batch_size=1).problems == []
    model = ModelConfig.model_validate({"input_shape": [2**31 - 1, 8],
                                        "layers": [{"type": "Flatten"}]})
    ((loc, message),) = plan_model(model, batch_size=1).problems
    assert loc == ("model", "input_shape")


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "configs").glob("*.yaml")))
def test_the_plan_counts_what_the_build_makes(name: str) -> None:
    cfg = load_config_text((ROOT / "configs" / name).read_text(), (), name)
    plan = plan_model(cfg.model, cfg.data.batch_size)
    model = build_model(cfg)
    assert plan.problems == []
    assert plan.count_params() == model.count_params()
    assert [p.output_shape for p in plan.layers] == [layer.output_shape for layer in model.layers]


# -- names -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../../x", "/abs", "a/b", "''", "a" * 200, ".hidden", "a b",
                                  "-flag", "a\\\\b", "'x:y'"])
def test_unsafe_names_are_refused(name: str) -> None:
    output = one_error(BASE.replace("name: hostile", f"name: {name}"))
    assert "c.yaml:1:1: name: a config name is a letter or digit" in output, output


@pytest.mark.parametrize("name", ["a", "fashion-cnn", "A.b_c-1", "'7'", "x" * 100])
def test_safe_names_are_accepted(name: str) -> None:
    code, output = cli(BASE.replace("name: hostile", f"name: {name}"))
    assert code == 0, output


# -- a softmax over one unit -----------------------------------------------------------------------
ONE_UNIT = BASE.replace("units: 2, activation: softmax", "units: 1, activation: softmax")


@pytest.mark.parametrize("text,args,path", [
    (ONE_UNIT, (), "model.layers[1].activation"),
    (ONE_UNIT, ("--set", "loss=binary_crossentropy"), "model.layers[1].activation"),
    (BASE, ("--set", "model.layers=[{type: Dense, units: 1}, {type: Dropout, rate: 0.1}, "
                     "{type: Activation, activation: softmax}, {type: Dropout, rate: 0.1}]"),
     "model.layers[2].activation"),
    (BASE, ("--set", "model.layers[1]={type: Dense, units: 1}", "--set",
            "loss={type: categorical_crossentropy, from_logits: true}"), "loss.from_logits"),
], ids=["dense", "dense-binary-loss", "activation-layer", "from-logits"])
def test_a_softmax_over_one_unit_is_refused(text: str, args: tuple[str, ...], path: str) -> None:
    output = one_error(text, *args)
    assert f"{path}: a softmax over a single unit" in output
    assert "use activation: sigmoid with binary_crossentropy, or units >= 2" in output


def test_a_softmax_over_one_unit_with_mse_suggests_linear() -> None:
    output = one_error(ONE_UNIT, "--set", "loss=mse")
    assert "use activation: linear" in output


@pytest.mark.parametrize("args", [
    (), ("--set", "model.layers[1].activation=sigmoid", "--set", "loss=binary_crossentropy"),
    ("--set", "model.layers[1]={type: Dense, units: 1}", "--set", "loss=mse"),
])
def test_one_unit_without_softmax_is_fine(args: tuple[str, ...]) -> None:
    code, output = cli(BASE, *args)
    assert code == 0, output


# -- every problem at once -------------------------------------------------------------------------
def test_shape_errors_come_with_schema_errors() -> None:
    text = BASE.replace("name: hostile", "name: ../x").replace(
        "input_shape: [2]", "input_shape: [4, 4, 1]").replace(
        "    - {type: Dense, units: 4, activation: relu}\n",
        "    - {type: Flatten}\n    - {type: Conv2D, filters: 2, kernel_size: 3}\n")
    text += "optimizer: {type: adam, lr: -1}\n"
    code, output = cli(text)
    assert code == 2 and output.startswith("error: c.yaml: 3 errors"), output
    assert "name: a config name" in output and "optimizer.lr: expected" in output
    assert "model.layers[1]: layer 1 (Conv2D): expects an image input" in output
    # with the schema fixed, the shape error and the softmax check come together
    text = text.replace("../x", "ok").replace("lr: -1", "lr: 0.1").replace("units: 2", "units: 1")
    code, output = cli(text)
    assert code == 2 and "2 errors" in output, output
    assert "layer 1 (Conv2D)" in output and "a softmax over a single unit" in output


def test_a_broken_model_section_is_not_shape_checked() -> None:
    # the shape check needs a valid model section; its own errors are enough there
    text = BASE.replace("units: 4", "units: 0").replace("input_shape: [2]", "input_shape: [2, 2]")
    output = cli(text)[1]
    assert "model.layers[0].units" in output and "layer " not in output


def test_many_problems_are_cut_to_a_readable_list() -> None:
    text = BASE + "metrics: [" + ", ".join(["nope"] * 200) + "]\n"
    code, output = cli(text)
    lines = output.strip().splitlines()
    assert code == 2 and lines[0] == "error: c.yaml: 200 errors", lines[:2]
    assert len(lines) == 52 and lines[-1] == "  ... and 150 more"


# -- generated hostile documents -------------------------------------------------------------------
@st.composite
def alias_graphs(draw: st.DrawFn) -> str:
    """A document of anchors, each a list, mapping or merge of earlier ones (or of itself)."""
    lines = ["x0: &x0 [1, two, 3.0]"]
    for i in range(1, draw(st.integers(1, 30))):
        refs = [f"*x{draw(st.integers(0, i))}" for _ in range(draw(st.integers(1, 6)))]
        # an alias to x{i} inside x{i} is a recursive alias (PyYAML registers the anchor first)
        kind = draw(st.sampled_from(["seq", "map", "merge", "nest"]))
        if kind == "seq":
            body = "[" + ", ".join(refs) + "]"
        elif kind == "map":
            body = "{" + ", ".join(f"k{j}: {r}" for j, r in enumerate(refs)) + "}"
        elif kind == "merge":
            body = "{<<: [" + ", ".join(refs) + f"], k{i}: {i}}}"
        else:
            depth = draw(st.integers(1, 40))
            body = "[" * depth + refs[0] + "]" * depth
        lines.append(f"x{i}: &x{i} {body}")
    return "\n".join(lines) + "\n"


def _count(value: object) -> int:
    if isinstance(value, dict):
        return 1 + sum(_count(v) for v in value.values())
    if isinstance(value, list):
        return 1 + sum(_count(v) for v in value)
    return 1


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(text=alias_graphs())
def test_generated_alias_graphs_are_read_or_refused(text: str) -> None:
    try:
        data, _ = parse_yaml(text)
    except ConfigError as err:
        assert len(err.issues) == 1 and "\n" not in str(err)
        return
    assert _count(data) <= MAX_NODES + 1


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(text=alias_graphs(), key=st.sampled_from(["seed", "name", "model.layers[0].units"]))
def test_generated_set_values_are_read_or_refused(text: str, key: str) -> None:
    flow = "{" + text.strip().replace("\n", ", ") + "}"
    value, issue = parse_value(flow, (key,), f"--set {key}=...")
    if issue is not None:
        assert issue.origin == f"--set {key}=..." and "\n" not in issue.render()
    else:
        assert _count(value) <= MAX_NODES + 1  # finite: no cycle is left in it


# hostile values for any key: out-of-range numbers, long or odd strings, deep lists
hostile = st.one_of(
    st.integers(-(10**30), 10**30), st.sampled_from([2**31 - 1, 2**31, 2**63, -(2**63), 10**99]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1e26, 1e308, -0.0, 5e-324]),
    st.text(max_size=120), st.sampled_from(["../../x", "/abs", "\x00", "a" * 300, "2001-13-45"]),
    st.recursive(st.integers(0, 3), lambda inner: st.lists(inner, max_size=3), max_leaves=200),
)
HOSTILE_BASE = yaml.safe_load(BASE)


def _paths(node: object, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_hostile_values_anywhere_never_crash(data: st.DataObject) -> None:
    config = copy.deepcopy(HOSTILE_BASE)
    path = data.draw(st.sampled_from([p for p in _paths(config) if p]))
    node = config
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = data.draw(hostile)
    code, output = cli(yaml.safe_dump(config, sort_keys=False))
    assert code in (0, 2), output
    if code == 2:
        assert output.startswith("error: ") and len(output) < 20_000, output
