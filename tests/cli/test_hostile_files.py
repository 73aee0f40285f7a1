"""Files are hostile input (issue 35, item 3): a checkpoint's or an exported file's metadata and a
YAML recipe are checked (types, sizes, agreement with the graph) before use, and error messages
show bounded excerpts (``errors.excerpt``), never an unbounded ``repr``.

Each hostile file is made here. The "hang" cases (a list of shared references legal under
``weights_only``, a YAML file of nested aliases) used to spin forever building ``repr()`` of the
value: here the one-line error comes back at once (no timing assertion: on the old code these tests
do not finish)."""

from __future__ import annotations

import argparse
import collections
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import SMALL, one_error_line
from inceptionnet import create_model
from inceptionnet.checkpoint import ModelSource, load_for_inference, open_for_inference
from inceptionnet.cli import main as cli
from inceptionnet.data import InputConfig
from inceptionnet.errors import CheckpointError, UsageError, excerpt, load_yaml
from inceptionnet.models import parse_model_kwargs
from inceptionnet.train.args import parse_args
from inceptionnet.train.state import check_resume, load_checkpoint

CLASSES = [f"c{i}" for i in range(10)]
ICFG = InputConfig(8, 1, (0.5,), (0.25,), 1.0, "bilinear", "digits")


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        rc = cli(argv)
    except SystemExit as e:
        rc = int(e.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def shared_list(depth: int = 60) -> list[Any]:
    """2**depth elements when walked, a few hundred bytes when pickled: ``a = [a, a]``, 60 times."""
    a: list[Any] = []
    for _ in range(depth):
        a = [a, a]
    return a


def shared_dict(depth: int = 60) -> collections.OrderedDict[str, Any]:
    d: collections.OrderedDict[str, Any] = collections.OrderedDict()
    for _ in range(depth):
        d = collections.OrderedDict(x=d, y=d)
    return d


class Hostile:
    """A test parameter pytest must not print: its own failure report would hang on the value."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "<hostile value>"


# --------------------------------------------------------------------------------------------------
# errors.excerpt and errors.load_yaml


EXCERPTS = [(Hostile(shared_list()), "[[[[[...], [...]]"), (Hostile(shared_dict()), "OrderedDict{'x': OrderedDict{"),
     (Hostile([[0] * 6] * 6 * 10), "[[0, 0, 0, 0, 0, 0], "), (Hostile("x" * 10**6), "'xxxx"),
     (Hostile(10**5000), "<int of 16610 bits>"), (Hostile(b"\x00" * 10**6), "b'\\x00"),
     (Hostile({i: str(i) for i in range(10**5)}), "{0: '0', 1: '1', 2: '2', 3: '3', ...}"),
     (Hostile(set(range(10**5))), "{0, 1, 2, 3, 4, 5, ...}"), (Hostile("two\nlines"), "'two\\nlines'"),
     (Hostile((1,)), "(1,)"), (Hostile(torch.zeros(2, 3)), "<Tensor of shape (2, 3)>"), (Hostile(object()), "<object>")]  # fmt: skip


@pytest.mark.parametrize("value, start", EXCERPTS, ids=[s for _, s in EXCERPTS])
def test_excerpt_is_bounded_whatever_the_value(value, start):
    value = value.value
    s = excerpt(value)
    assert s.startswith(start) and len(s) <= 80 and "\n" not in s
    assert len(excerpt(value, limit=20)) <= 20


def test_excerpt_visits_a_bounded_number_of_elements():
    """reprlib alone bounds the depth, not the count: a 6-wide tree 30 deep is walked 6**maxlevel
    times; excerpt stops after its budget of elements (count the calls through a list subclass)."""
    calls = 0

    class Counting(list):  # type: ignore[type-arg]
        def __iter__(self):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            return super().__iter__()

    w: Any = Counting(range(6))
    for _ in range(30):
        w = Counting([w] * 6)
    excerpt(w)
    assert calls <= 200


LAUGHS = "a: &a [x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(24)
)


@pytest.mark.parametrize(
    "text, message",
    [(LAUGHS, "YAML aliases are not accepted (*a at line 2, column 8)"), ("x: &a 1\ny: *a", "YAML aliases"),
     ("[" * 60_000, "YAML nested more than 50 levels of brackets"),
     ("".join(" " * i + "a:\n" for i in range(60)), "YAML nested more than 50 levels (at line 50"), ("x: " + "9" * 5000, "a YAML value cannot be read"),
     ("x: [", "is not valid YAML: expected the node content"), ("x" * (65 << 10), "characters of YAML; at most 65,536")],
)  # fmt: skip
def test_load_yaml_refuses_aliases_depth_and_size(text, message):
    with pytest.raises(UsageError) as e:
        load_yaml(text, "recipe r.yaml")
    assert str(e.value).startswith("recipe r.yaml") and message in str(e.value) and "\n" not in str(e.value)


def test_load_yaml_reads_plain_recipes_and_anchors_without_aliases():
    assert load_yaml("lr: 0.1\nmodel_kwargs: {width: 0.5}\nx: &a 1", "r") == {
        "lr": 0.1, "model_kwargs": {"width": 0.5}, "x": 1,
    }  # fmt: skip


# --------------------------------------------------------------------------------------------------
# YAML recipes (train) and --model-kwargs values


def test_train_recipe_of_nested_aliases_is_one_line(tmp_path):
    """1.1 KB of nested aliases: the old reader built 2**24 references and hung on repr()."""
    recipe = tmp_path / "laughs.yaml"
    recipe.write_text(LAUGHS.replace("a: &a", "model: &a") + "lr: *y\n")
    assert recipe.stat().st_size < 2000
    with pytest.raises(UsageError, match=f"recipe {recipe}: YAML aliases are not accepted"):
        parse_args(["--recipe", str(recipe)])


def test_train_recipe_too_large_is_refused_before_reading(tmp_path):
    recipe = tmp_path / "big.yaml"
    recipe.write_text("# " + "x" * (2 << 20) + "\nlr: 0.1\n")  # 2 MB: 100 s for PyYAML
    size = recipe.stat().st_size
    with pytest.raises(UsageError, match=f"recipe {recipe} is {size:,} bytes; a recipe is at most 65,536"):
        parse_args(["--recipe", str(recipe)])


def test_model_kwargs_value_with_aliases_is_one_line():
    """A recipe's model_kwargs list holds KEY=VALUE strings, each read as YAML: the same aliases."""
    chain = ", ".join(f"&a{i + 1} [*a{i}, *a{i}]" for i in range(40))
    with pytest.raises(UsageError, match="--model-kwargs 'out_indices=.*YAML aliases are not accepted"):
        parse_model_kwargs([f"out_indices=[&a0 [1, 1], {chain}]"])


# --------------------------------------------------------------------------------------------------
# Checkpoint metadata


@pytest.fixture(scope="module")
def state_dict() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return create_model("googlenet_small", **SMALL).state_dict()


@pytest.fixture(scope="module")
def png(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("img") / "x.png"
    Image.fromarray(np.full((8, 8), 128, np.uint8)).save(p)
    return p


def save_checkpoint(path: Path, sd: dict[str, torch.Tensor], **override: Any) -> Path:
    ck: dict[str, Any] = {
        "version": 1, "model": sd, "model_name": "googlenet_small", "model_kwargs": {"width": 0.125},
        "classes": list(CLASSES), "data_cfg": ICFG.to_dict(), "epoch": 1,
    }  # fmt: skip
    ck.update(override)
    torch.save(ck, path)
    return path


HOSTILE_META = [
    (Hostile({"classes": shared_list()}), "its classes [[[[[...], [...]]"),
    (Hostile({"classes": shared_dict()}), "its classes OrderedDict{'x'"),
    (Hostile({"model_kwargs": {"width": shared_list()}}), "its model_kwargs {'width': [[[[...]"),
    (Hostile({"model_kwargs": shared_dict()}), "its model_kwargs OrderedDict{'x'"),
    (Hostile({"model_kwargs": {"width": 10**400}}), "width must be positive and finite (at most 64), got <int of 1329 bits>"),
    (Hostile({"model_name": shared_list()}), "its model_name [[[[[...], [...]]"),
    (Hostile({"model_name": "g" * 10**6}), "its model_name 'gggg"),
    (Hostile({"data_cfg": {**ICFG.to_dict(), "mean": shared_list()}}), "data_cfg mean is [[[[[...]"),
    (Hostile({"data_cfg": {**ICFG.to_dict(), "input_size": 10**7}}), "data_cfg input_size is 10000000, not a positive integer (at most 4096)"),
    (Hostile({"data_cfg": {**ICFG.to_dict(), "std": [10**400]}}), "data_cfg std is [<int of 1329 bits>], not 1 finite positive"),
]  # fmt: skip


@pytest.mark.parametrize("override, message", HOSTILE_META, ids=[m for _, m in HOSTILE_META])
def test_hostile_checkpoint_metadata_is_one_line(override, message, state_dict, png, tmp_path, capsys):
    path = save_checkpoint(tmp_path / "hostile.pt", state_dict, **override.value)
    rc, _, err = run(["predict", "--checkpoint", str(path), str(png)], capsys)
    assert rc == 2
    line = one_error_line(err, str(path), message)
    assert len(line) < 400


@pytest.mark.parametrize("command", ["export", "embed"])
def test_other_commands_read_the_same_checked_metadata(command, state_dict, png, tmp_path, capsys):
    path = save_checkpoint(tmp_path / "hostile.pt", state_dict, classes=shared_list())
    out = tmp_path / ("m.onnx" if command == "export" else "e.npz")
    argv = [command, "--checkpoint", str(path), "-o", str(out)] + ([str(png)] if command == "embed" else [])
    rc, _, err = run(argv, capsys)
    assert rc == 2 and not out.exists()
    one_error_line(err, str(path), "its classes [[[[[...], [...]]")


def test_train_resume_checks_the_metadata_before_showing_it(state_dict, tmp_path):
    """``train --resume``: a checkpoint of another model is named in the message; a model_name of
    shared references hung there."""
    path = save_checkpoint(tmp_path / "checkpoint.pt", state_dict, model_name=shared_list())
    with pytest.raises(CheckpointError, match=re.escape(f"checkpoint {path}: its model_name [[[[[...]")):
        check_resume(argparse.Namespace(model="googlenet_small"), load_checkpoint(path), path, {})


def test_safetensors_metadata_nested_too_deep_is_one_line(state_dict, png, tmp_path, capsys):
    from safetensors.torch import save_file

    path = tmp_path / "deep.safetensors"
    meta = {"model_name": "googlenet_small", "model_kwargs": json.dumps({"width": 0.125}),
            "classes": "[" * 100_000, "data_cfg": json.dumps(ICFG.to_dict())}  # fmt: skip
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(path), metadata=meta)
    rc, _, err = run(["predict", "--checkpoint", str(path), str(png)], capsys)
    assert rc == 2
    one_error_line(err, f"safetensors file {path}: its metadata classes is not valid JSON")


def test_a_checkpoint_within_the_bounds_still_works(state_dict, tmp_path):
    path = save_checkpoint(tmp_path / "ok.pt", state_dict, model_kwargs={"width": 0.125, "norm": "bn"})
    _, _, icfg, classes = load_for_inference(str(path), None, None)
    assert classes == CLASSES and icfg == ICFG


# --------------------------------------------------------------------------------------------------
# Exported ONNX metadata against the graph


def onnx_file(
    path: Path, *, chans: int = 1, size: int = 8, outputs: int | str = 3, raw: dict[str, str] | None = None,
    **meta: Any,
) -> Path:  # fmt: skip
    """A tiny ONNX classifier (global average pool, then a matmul) taking (N, chans, size, size) to
    ``outputs`` classes (a name: dynamic), with inceptionnet metadata as ``export`` writes it,
    overridden by ``meta`` (None: key left out) and by ``raw`` texts."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from inceptionnet.deploy.export import encode_onnx_metadata

    n = outputs if isinstance(outputs, int) else 3
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", chans, size, size])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", outputs])
    w = numpy_helper.from_array(np.ones((chans, n), np.float32), "w")
    nodes = [helper.make_node("GlobalAveragePool", ["input"], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("MatMul", ["f", "w"], ["y"]), helper.make_node("Shape", ["input"], ["b"], end=1),
             helper.make_node("Concat", ["b", "m1"], ["s"], axis=0),  # (batch, -1): ORT cannot tell n
             helper.make_node("Reshape", ["y", "s"], ["logits"])]  # fmt: skip
    m1 = numpy_helper.from_array(np.array([-1], np.int64), "m1")
    model = helper.make_model(
        helper.make_graph(nodes, "tiny", [x], [y], [w, m1]), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 8
    base = {"model_name": "tiny", "input_size": [chans, size, size], "mean": [0.5] * chans, "std": [0.25] * chans,
            "interpolation": "bilinear", "crop_pct": 1.0, "num_classes": n,
            "classes": [f"k{i}" for i in range(n)], "inceptionnet_version": "test"}  # fmt: skip
    base.update(meta)
    props = {**encode_onnx_metadata({k: v for k, v in base.items() if v is not None}), **(raw or {})}
    for k, v in props.items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(path))
    return path


HOSTILE_ONNX = [
    ({"crop_pct": 0}, "metadata crop_pct is 0, not a number in (0, 1]"),
    ({"crop_pct": -0.5}, "metadata crop_pct is -0.5, not a number in (0, 1]"),
    ({"crop_pct": "x"}, "metadata crop_pct is 'x', not a number in (0, 1]"),
    ({"input_size": [1, 0, 0]}, "metadata input_size is [1, 0, 0], not [channels, height, width]"),
    ({"mean": [0.5] * 3, "std": [0.25] * 3}, "metadata mean is [0.5, 0.5, 0.5], not 1 finite numbers"),
    ({"input_size": [3, 8, 8], "mean": [0.5] * 3, "std": [0.25] * 3},
     "its metadata says 3 input channels but the graph takes 1"),
    ({"input_size": [1, 16, 16]}, "its metadata says 16 input height but the graph takes 8"),
    ({"std": [0.0]}, "metadata std is [0.0], not 1 finite positive numbers"),
    ({"classes": 5}, "its classes 5 are not a list of class names"),
    ({"raw": {"classes": "[" * 100_000}}, "its classes '[[[[["),
]  # fmt: skip


@pytest.mark.parametrize("meta, message", HOSTILE_ONNX, ids=[m for _, m in HOSTILE_ONNX])
def test_hostile_onnx_metadata_is_one_line(meta, message, png, tmp_path, capsys):
    path = onnx_file(tmp_path / "hostile.onnx", **meta)
    rc, _, err = run(["predict", "--onnx", str(path), str(png)], capsys)
    assert rc == 2
    one_error_line(err, str(path), message)


@pytest.mark.parametrize("num_classes", ["abc", 10**9, [3]])
def test_onnx_num_classes_of_a_dynamic_output_is_checked(num_classes, png, tmp_path, capsys):
    """With a dynamic output and no class names, the metadata's num_classes says how many outputs:
    a billion made a list of a billion names."""
    path = onnx_file(tmp_path / "dyn.onnx", outputs="n", num_classes=num_classes, classes=None)
    rc, _, err = run(["predict", "--onnx", str(path), str(png)], capsys)
    assert rc == 2
    one_error_line(err, str(path), f"metadata num_classes is {excerpt(num_classes)}")


@pytest.mark.parametrize("outputs", [3, "n"])
def test_a_truthful_onnx_file_runs(outputs, tmp_path):
    path = onnx_file(tmp_path / "ok.onnx", crop_pct=0.875, outputs=outputs)
    p = open_for_inference(ModelSource.exported(path))
    assert p.classes == ["k0", "k1", "k2"] and p.input_config.crop_pct == 0.875
    assert tuple(p(torch.zeros(2, 1, 8, 8)).shape) == (2, 3)
