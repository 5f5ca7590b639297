"""Every help screen renders: `covidct`, `--help`, `-h` and each subcommand's --help."""

from __future__ import annotations

import pytest

from covidct.cli import COMMANDS, main


@pytest.mark.parametrize("argv", [[], ["--help"], ["-h"]])
def test_top_level_help_renders(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse exits 0 after printing help
        code = exc.code
    assert code in (0, 2)
    out = capsys.readouterr().out
    assert "analyze" in out and "% involvement" in out


@pytest.mark.parametrize("command", COMMANDS)
def test_each_subcommand_help_renders(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("usage: covidct")
