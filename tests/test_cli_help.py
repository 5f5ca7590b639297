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


def _all_help_text(capsys) -> str:
    main([])
    texts = [capsys.readouterr().out]
    for command in COMMANDS:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        texts.append(capsys.readouterr().out)
        for sub in ("lung", "classifier"):
            if command == "train":
                with pytest.raises(SystemExit):
                    main([command, sub, "--help"])
                texts.append(capsys.readouterr().out)
    return "\n".join(texts)


def test_help_names_the_method_by_its_paper_not_as_the_seed(capsys):
    from pathlib import Path

    text = _all_help_text(capsys)
    assert "the seed" not in text.lower() and "seed's" not in text.lower()
    assert "Gozes et al. 2020" in text
    readme = Path(__file__).resolve().parents[1] / "README.md"
    assert "the seed" not in readme.read_text().lower()
