"""`inceptionnet summary` / inceptionnet.analysis: per-layer shapes, params and MACs, Table 1, bottlenecks."""

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision

from inceptionnet import InputShapeError, create_model, list_models
from inceptionnet.cli import main as cli_main
from inceptionnet.commands.summary import (
    PAPER_TABLE1,
    bottleneck,
    bottleneck_example,
    render,
    render_bottleneck,
    render_table1,
    summarize,
    table1,
)

GOOGLENET_ROWS = [
    "conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b", "maxpool3",
    "inception4a", "inception4b", "inception4c", "inception4d", "inception4e", "maxpool4",
    "inception5a", "inception5b", "avgpool", "dropout", "fc",
]  # fmt: skip


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = cli_main(["summary", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_json_schema(capsys):
    rc, out, _ = run_cli(capsys, "googlenet", "--format", "json")
    assert rc == 0
    s = json.loads(out)
    assert {"model", "input_size", "total_params", "total_macs", "layers"} <= s.keys()
    assert s["model"] == "googlenet" and s["input_size"] == [3, 224, 224]
    assert [r["name"] for r in s["layers"]] == GOOGLENET_ROWS
    for r in s["layers"]:
        assert {"name", "type", "output_shape", "params", "macs"} <= r.keys()
        assert isinstance(r["type"], str) and all(isinstance(d, int) for d in r["output_shape"])
        assert isinstance(r["params"], int) and isinstance(r["macs"], int)
    rows = {r["name"]: r for r in s["layers"]}
    assert rows["conv1"]["output_shape"] == [64, 112, 112]
    assert rows["inception5b"]["output_shape"] == [1024, 7, 7]
    assert rows["fc"]["output_shape"] == [1000] and rows["fc"]["params"] == 1024 * 1000 + 1000
    assert sum(r["params"] for r in s["layers"]) == s["total_params"]
    assert sum(r["macs"] for r in s["layers"]) == s["total_macs"]
    assert "biases" in s["params_counting"]  # the output says what params count


def test_inception3a_matches_the_paper_and_the_seed():
    s = summarize("googlenet_paper", depth=2)
    rows = {r["name"]: r for r in s["layers"]}
    blk = rows["inception3a"]
    assert blk["weights"] == 163_328  # seeds/003, without biases
    assert blk["params"] == 163_328 + (64 + 96 + 128 + 16 + 32 + 32)  # with biases
    assert blk["macs"] == 128_049_152
    assert blk["output_shape"] == [256, 28, 28]
    branches = {r["name"].split(".", 1)[1]: r for r in s["layers"] if r["name"].startswith("inception3a.")}
    assert {k: v["weights"] for k, v in branches.items()} == {
        "branch1": 12_288, "branch2.0": 18_432, "branch2.1": 110_592, "branch3.0": 3_072,
        "branch3.1": 12_800, "branch4.0": 0, "branch4.1": 6_144,
    }  # fmt: skip
    assert branches["branch3.0"]["desc"].startswith("#5x5 reduce")
    assert sum(r["macs"] for r in branches.values()) == blk["macs"]
    assert [r["depth"] for r in s["layers"]].count(1) == len(GOOGLENET_ROWS) + 2  # + lrn1, lrn2


def test_googlenet_totals_match_torchvision_metadata():
    meta = torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1.meta
    s = summarize("googlenet", input_size=(224, 224))
    assert s["total_params"] == meta["num_params"] == 6_624_904
    assert round(s["total_macs"] / 1e9, 3) == meta["_ops"] == 1.498


def test_counts_a_torchvision_inception_v3_module_like_torchvision():
    # Any nn.Module works; on the meta device this costs nothing.
    with torch.device("meta"):
        m = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False)
    s = summarize(m, input_size=(299, 299))
    assert (
        round(s["total_macs"] / 1e9, 3) == torchvision.models.Inception_V3_Weights.IMAGENET1K_V1.meta["_ops"]
    )
    assert s["total_params"] == sum(p.numel() for p in m.parameters())


@pytest.mark.skipif("inception_v3" not in list_models(), reason="inception_v3 not registered yet")
def test_inception_v3_totals_match_torchvision_metadata():
    meta = torchvision.models.Inception_V3_Weights.IMAGENET1K_V1.meta
    s = summarize("inception_v3", input_size=(299, 299))
    assert round(s["total_macs"] / 1e9, 3) == meta["_ops"] == 5.713
    with torch.device("meta"):
        has_aux = hasattr(create_model("inception_v3"), "aux_logits")
    if has_aux:  # torchvision's count includes the aux head its weights carry
        assert (
            summarize("inception_v3", input_size=(299, 299), aux=True)["total_params"] == meta["num_params"]
        )


def test_table1_googlenet_paper():
    t = table1("googlenet_paper")
    rows = {r["name"]: r for r in t["rows"]}
    r3a = rows["inception3a"]
    assert (r3a["n1x1"], r3a["n3x3_reduce"], r3a["n3x3"], r3a["n5x5_reduce"], r3a["n5x5"], r3a["pool_proj"]) == (
        64, 96, 128, 16, 32, 32,
    )  # fmt: skip
    assert r3a["params"] == 163_328 and r3a["ops"] == 128_049_152 and r3a["output_size"] == "28x28x256"
    assert r3a["paper_params_k"] == 159 and r3a["paper_ops_m"] == 128
    conv = rows["conv2+conv3"]  # the paper's "convolution 3x3/1" row with its 64-channel reduce
    assert (conv["depth"], conv["n3x3_reduce"], conv["n3x3"], conv["patch"]) == (2, 64, 192, "3x3/1")
    assert conv["params"] == 114_688 and round(conv["params"] / 1024) == PAPER_TABLE1["conv2"][0]
    assert rows["conv1"]["patch"] == "7x7/2" and rows["maxpool4"]["patch"] == "3x3/2"
    assert rows["avgpool"]["patch"] == "7x7/1" and rows["dropout"]["type"] == "dropout (40%)"
    assert [r["type"] for r in t["rows"]][-2:] == ["linear", "softmax"]
    assert sum(r["ops"] for r in t["rows"]) == t["total_macs"]
    # the paper's ops column agrees with ours to within its rounding where its params column is off
    for name in ("inception4c", "inception4d", "inception4e", "inception5b"):
        assert abs(rows[name]["ops"] / 1e6 - rows[name]["paper_ops_m"]) < 0.5
    text = render_table1(t)
    assert "inception (3a)" in text and "159.5K" in text and "128.0M" in text and "K = 1024" in text


def test_table1_only_for_imagenet_googlenets(capsys):
    rc, out, err = run_cli(capsys, "googlenet_small", "--table1")
    assert rc == 2 and out == "" and err.startswith("error: --table1") and err.count("\n") == 1
    rc, out, _ = run_cli(capsys, "googlenet", "--table1", "--format", "csv")
    assert rc == 0 and "googlenet" not in out  # csv: just the table
    assert len(list(csv.reader(io.StringIO(out)))) == 1 + 19  # header + the paper's 19 rows (softmax too)


def test_bottleneck_example_reproduces_seed_002():
    ex = bottleneck_example()
    assert ex["bottleneck"]["weights"] == 69_632  # 16,384 + 36,864 + 16,384
    assert ex["direct"]["weights"] == 589_824  # 256 x 256 x 3 x 3
    assert ex["bottleneck"]["macs"] == 69_632 and ex["direct"]["macs"] == 589_824  # per output position
    at14 = bottleneck_example(size=14)
    assert at14["bottleneck"]["macs"] == 69_632 * 196 and at14["direct"]["macs"] == 589_824 * 196


def test_bottleneck_report(capsys):
    rc, out, _ = run_cli(capsys, "googlenet_paper", "--bottleneck", "--format", "json")
    assert rc == 0
    b = json.loads(out)
    blocks = {x["name"]: x for x in b["blocks"]}
    assert list(blocks) == [n for n in GOOGLENET_ROWS if n.startswith("inception")]
    b3a = blocks["inception3a"]
    assert b3a["weights"] == 163_328 and b3a["macs"] == 128_049_152
    # 1x1 and pool proj kept, 3x3 and 5x5 on all 192 input channels
    assert b3a["weights_without_reduction"] == 192 * 64 + 192 * 128 * 9 + 192 * 32 * 25 + 192 * 32
    assert b3a["macs_without_reduction"] == b3a["weights_without_reduction"] * 28 * 28
    assert all(x["ratio"] > 1 for x in b["blocks"])
    assert b["example"]["bottleneck"]["weights"] == 69_632 and b["example"]["direct"]["weights"] == 589_824
    text = render_bottleneck(bottleneck("googlenet_small", input_size=(32, 32)))
    assert "69,632" in text and "589,824" in text and "inception5b" in text


def test_bottleneck_needs_googlenet_blocks():
    with torch.device("meta"):
        m = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False)
    with pytest.raises(ValueError, match="--bottleneck"):
        bottleneck(m, input_size=(299, 299))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["no_such_model"], "unknown model 'no_such_model'"),
        (["googlenet", "--input-size", "8", "8"], "too small"),
        (["googlenet_paper", "--input-size", "14", "14", "--table1"], "too small"),
        (["googlenet", "--input-size", "0", "224"], "input size"),
        (["googlenet", "--in-chans", "0"], "in_chans"),
        (["googlenet", "--num-classes", "-1"], "num_classes"),
        (["googlenet", "--bottleneck", "--depth", "2"], "--depth"),
    ],
)
def test_user_errors_are_one_line_exit_2(capsys, argv, message):
    rc, out, err = run_cli(capsys, *argv)
    assert rc == 2 and out == ""
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_console_script():
    exe = Path(sys.executable).with_name("inceptionnet")
    if not exe.exists():
        pytest.skip("console script not installed")
    p = subprocess.run(
        [str(exe), "summary", "googlenet", "--input-size", "8", "8"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.startswith("error: input 8x8 is too small") and p.stderr.count("\n") == 1


def test_text_markdown_csv(capsys):
    rc, text, _ = run_cli(capsys, "googlenet_small", "--in-chans", "1", "--num-classes", "10", "--depth", "2")
    assert rc == 0 and "input 1x28x28, 10 classes" in text and "  inception3a.branch3.2" in text
    assert "biases" in text and "FlopCounterMode" in text
    s = summarize("googlenet_small", in_chans=1, num_classes=10)
    md = render(s, "markdown").splitlines()
    assert md[2].startswith("| layer |") and md[3].startswith("|---|")
    rows = list(csv.DictReader(io.StringIO(render(s, "csv"))))
    assert [r["name"] for r in rows] == [r["name"] for r in s["layers"]]
    assert sum(int(r["macs"]) for r in rows) == s["total_macs"]
    assert "maxpool1" not in [r["name"] for r in rows]  # nn.Identity placeholders are skipped


def test_aux_heads_only_when_asked():
    plain = summarize("googlenet_paper")
    assert "aux1" not in [r["name"] for r in plain["layers"]] and not plain["not_run"]
    aux = summarize("googlenet_paper", aux=True)
    names = [r["name"] for r in aux["layers"]]
    assert names.index("inception4a") < names.index("aux1") < names.index("inception4b")
    assert names.index("inception4d") < names.index("aux2") < names.index("inception4e")
    with torch.device("meta"):
        full = create_model("googlenet_paper")  # built with aux heads by default
    assert aux["total_params"] == sum(p.numel() for p in full.parameters())
    assert aux["total_macs"] > plain["total_macs"]


def test_real_module_matches_meta_and_keeps_its_mode():
    m = create_model("googlenet_small", num_classes=10, width=0.25).train()
    with torch.device("meta"):
        m_meta = create_model("googlenet_small", num_classes=10, width=0.25)
    cpu = summarize(m, input_size=(32, 32))
    assert m.training  # restored after the eval-mode forward
    assert cpu["layers"] == summarize(m_meta, input_size=(32, 32))["layers"]


@pytest.mark.parametrize("name", list_models())
def test_every_model_at_its_smallest_input(name):
    with torch.device("meta"):
        m = create_model(name)
        if getattr(m, "aux_logits", False):  # summary builds without aux heads by default
            m = create_model(name, aux_logits=False)
    size = int(m.default_cfg["min_input_size"][-1])
    s = summarize(name, input_size=(size, size))
    assert s["total_params"] == sum(p.numel() for p in m.parameters())
    top = [r for r in s["layers"] if r["depth"] == 1]
    assert sum(r["params"] for r in top) == s["total_params"]
    assert sum(r["macs"] for r in top) == s["total_macs"] > 0
    assert top[-1]["output_shape"] == [1000]
    if size > 1:
        with pytest.raises(InputShapeError):
            summarize(name, input_size=(size - 1, size))
