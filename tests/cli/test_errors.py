"""How `headmaps` reports errors: one line each; the traceback only under -v."""

from __future__ import annotations

import pytest

import headmaps.cli as cli
from headmaps.cli import info
from headmaps.errors import HeadmapsError


def _fail_with(monkeypatch, exc: BaseException) -> None:
    """Make ``headmaps info`` raise ``exc`` instead of loading a model."""
    def boom(_args):
        raise exc

    monkeypatch.setattr(info, "run", boom)


def test_bad_input_is_one_line(monkeypatch, capsys):
    _fail_with(monkeypatch, HeadmapsError("no such thing; try another"))
    assert cli.main(["info", "x"]) == 2
    err = capsys.readouterr().err
    assert err == "headmaps: error: no such thing; try another\n"


def test_bad_input_shows_traceback_with_verbose(monkeypatch, capsys):
    _fail_with(monkeypatch, HeadmapsError("no such thing"))
    assert cli.main(["-v", "info", "x"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert err.rstrip().endswith("headmaps: error: no such thing")


@pytest.mark.parametrize("exc", [IndexError("list index out of range"), KeyError("w"),
                                 ValueError("bad shape"), RuntimeError("boom")])
def test_bugs_are_one_line_that_says_so(monkeypatch, capsys, exc):
    _fail_with(monkeypatch, exc)
    assert cli.main(["info", "x"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error" in err and type(exc).__name__ in err
    assert "-v" in err and "Traceback" not in err
    assert cli.main(["-v", "info", "x"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and type(exc).__name__ in err


@pytest.mark.parametrize("exc, code, text", [
    (KeyboardInterrupt(), 130, "interrupted"),
    (PermissionError(13, "Permission denied", "/x/y"), 2, "Permission denied (/x/y)"),
    (OSError(28, "No space left on device"), 2, "No space left on device"),
])
def test_interrupts_and_faults_are_one_line(monkeypatch, capsys, exc, code, text):
    _fail_with(monkeypatch, exc)
    assert cli.main(["info", "x"]) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and text in err and "Traceback" not in err


def test_missing_templates_file_is_bad_input(tmp_path, capsys):
    from headmaps.cli.validate import read_templates

    with pytest.raises(HeadmapsError, match="no file at"):
        read_templates(str(tmp_path / "nope.json"))
    bad = tmp_path / "t.json"
    bad.write_text('{"templates": ["no placeholder"]}')
    with pytest.raises(HeadmapsError, match="exactly once"):
        read_templates(str(bad))
