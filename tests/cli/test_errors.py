"""User errors are one line, bugs keep their traceback.

A deliberate check of what the user gave raises ``UsageError`` (an ``InceptionNetError`` that is
also a ``ValueError``): the CLI prints one ``error:`` line and exits 2. A bare ``ValueError`` from
inside torch (a shape bug) is not the user's fault: it reaches the user with its traceback.
(Every documented bad input giving one line is checked by the reliability suites.)"""

import argparse
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from inceptionnet import errors
from inceptionnet.cli import main as cli
from inceptionnet.commands import listing
from inceptionnet.errors import InceptionNetError, UsageError, run_main


def _shape_bug(*_args, **_kwargs):
    """A ValueError raised by torch itself: a loss over 2 predictions and 3 targets."""
    return F.cross_entropy(torch.zeros(2, 3), torch.zeros(3, dtype=torch.long))


def _error_lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("error:")]


def test_usage_error_is_a_project_error_and_a_value_error():
    assert issubclass(UsageError, InceptionNetError) and issubclass(UsageError, ValueError)
    assert ValueError not in errors.USER_ERRORS
    assert InceptionNetError in errors.USER_ERRORS


def test_torch_value_error_in_a_command_propagates(monkeypatch, capsys):
    monkeypatch.setattr(listing, "count_params", _shape_bug)
    with pytest.raises(ValueError, match="batch_size"):
        cli(["list", "googlenet_small"])
    assert not _error_lines(capsys.readouterr().err)


def test_torch_value_error_reaches_the_user_as_a_traceback():
    code = (
        "import sys, torch, torch.nn.functional as F\n"
        "from inceptionnet.commands import listing\n"
        "listing.count_params = lambda m: F.cross_entropy(torch.zeros(2, 3), torch.zeros(3, dtype=torch.long))\n"
        "from inceptionnet.cli import main\n"
        "sys.exit(main(['list', 'googlenet_small']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode not in (0, 2), proc.stderr
    assert "Traceback (most recent call last)" in proc.stderr
    assert "ValueError: Expected input batch_size (2) to match target batch_size (3)" in proc.stderr
    assert not _error_lines(proc.stderr)


def test_usage_error_is_one_line_exit_2(capsys):
    assert cli(["list", " "]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == ["error: the pattern is empty; leave it out to list every model"]


def test_usage_error_prints_its_first_line_only(monkeypatch, capsys):
    def main(args):
        raise UsageError("--flag 3 is out of range\nmore detail that the user does not need")

    monkeypatch.setattr(listing, "main", main)
    assert cli(["list"]) == 2
    assert capsys.readouterr().err.splitlines() == ["error: --flag 3 is out of range"]


def test_debug_reraises_a_usage_error(capsys):
    with pytest.raises(UsageError, match="the pattern is empty"):
        cli(["list", " ", "--debug"])
    assert not _error_lines(capsys.readouterr().err)


def test_parse_time_usage_error_is_one_line(tmp_path, capsys):
    """A recipe is read while parsing: its errors are user errors too (one line, exit 2)."""
    assert cli(["train", "--recipe", "no_such_recipe"]) == 2
    assert _error_lines(capsys.readouterr().err)[0].startswith("error: unknown recipe 'no_such_recipe'")
    bad = tmp_path / "binary.yaml"
    bad.write_bytes(b"\xff\xfe\x00\x81 not text")
    assert cli(["train", "--recipe", str(bad)]) == 2
    assert capsys.readouterr().err.splitlines() == [f"error: recipe {bad} is not valid YAML: not UTF-8 text"]
    with pytest.raises(UsageError):
        cli(["train", "--recipe", str(bad), "--debug"])


@pytest.mark.parametrize(
    ("exc", "rc", "line"),
    [
        (UsageError("bad value"), 2, "error: bad value"),
        (
            FileNotFoundError(2, "No such file or directory", "x.png"),
            2,
            "error: x.png: No such file or directory",
        ),
        (KeyboardInterrupt(), 130, "error: interrupted"),
    ],
)
def test_run_main_user_errors(exc, rc, line, capsys):
    def main(args):
        raise exc

    assert run_main(main, argparse.Namespace(debug=False)) == rc
    assert capsys.readouterr().err.splitlines() == [line]


@pytest.mark.parametrize(
    "exc", [ValueError("a bug"), RuntimeError("a bug"), TypeError("a bug"), KeyError("k")]
)
def test_run_main_lets_bugs_through(exc, capsys):
    def main(args):
        raise exc

    with pytest.raises(type(exc)):
        run_main(main, argparse.Namespace(debug=False))
    assert not _error_lines(capsys.readouterr().err)


def test_damaged_user_files_are_usage_errors(tmp_path):
    """Third-party errors on a user's file are caught where it is read: a damaged ablation run file."""
    from inceptionnet.train import ablation

    f = tmp_path / "run.json"
    f.write_text('{"argv": [')
    with pytest.raises(UsageError, match=f"{f} is damaged .*delete {tmp_path} to run it again"):
        ablation.read_json(f)
    f.write_text("[1, 2]")
    with pytest.raises(UsageError, match="not a JSON object"):
        ablation.read_json(f)
