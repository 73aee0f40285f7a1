"""The command table and its runner: every command answers --help, and running one command never
breaks the next (a submodule named like a builtin once shadowed ``list`` inside ``commands``)."""

import pytest

from inceptionnet.cli import main as cli
from inceptionnet.commands import COMMANDS


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_has_help(name, capsys):
    with pytest.raises(SystemExit) as e:
        cli([name, "--help"])
    assert e.value.code == 0
    assert "usage: inceptionnet " + name in capsys.readouterr().out


def test_commands_run_one_after_another(capsys):
    assert cli(["list", "googlenet*"]) == 0
    assert cli(["list", "googlenet*"]) == 0
    assert cli(["summary", "googlenet_small", "--input-size", "32", "32"]) == 0
    out = capsys.readouterr().out
    assert out.count("googlenet_small") >= 2


def test_python_dash_m_inceptionnet(capsys):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "inceptionnet", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip()
