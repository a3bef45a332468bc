"""`headmaps track`: the outputs, the exit code when a checkpoint fails, one-line errors."""

from __future__ import annotations

import json
import shutil

import pytest
from series import CROSSING_STEP, copying_pairs, write_series

from headmaps.cli import main
from headmaps.track import TrackResult
from tiny_vocab import tokenizer


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    """The saved series (tests/track/series.py), its copying pairs as a JSON file."""
    folder = tmp_path_factory.mktemp("cli_series")
    paths, _ = write_series(folder)
    (folder / "copying.json").write_text(json.dumps(
        {"name": "copying", "pairs": [list(p) for p in copying_pairs(tokenizer())]}))
    return paths, str(folder / "copying.json")


def _args(paths, rel, *extra):
    return ["track", *paths, "--relations", rel, "--no-types", "--preset", "paper",
            "--min-pairs", "5", "--workers", "1", *extra]


def test_cli_writes_table_header_summary_figure(paths, tmp_path, capsys):
    ckpts, rel = paths
    out = tmp_path / "out"
    assert main(_args(ckpts, rel, "--steps", ",".join(str(10 * i) for i in range(6)),
                      "--out", str(out))) == 0
    printed = capsys.readouterr().out
    assert "1.0 (30)" in printed  # checkpoint 3 at the step given on the command line
    for name in ("track.parquet", "track.json", "summary.md", "track.png"):
        assert (out / name).is_file(), name
    # the last line names what the folder holds, no more
    assert printed.splitlines()[-1] == (f"wrote summary.md, track.json, track.parquet and "
                                        f"track.png under {out}/")
    res = TrackResult.load(out)
    assert res.first_crossing(relation=res.relations[0])["step"].tolist() == [30]
    page = tmp_path / "timeline.html"
    assert main(_args(ckpts, rel, "--html", str(page))) == 0
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and 'id="tl-data"' in text
    assert str(tmp_path) not in text  # local paths stay out of a page meant to be shared
    assert CROSSING_STEP == 300  # the names' own steps would have said 300


def test_cli_refuses_a_page_that_is_not_html_before_any_work(paths, tmp_path, capsys):
    ckpts, rel = paths
    assert main(_args(ckpts, rel, "--html", str(tmp_path / "timeline.txt"))) == 2
    err = capsys.readouterr().err.strip()
    assert "--html" in err and "ending in .html" in err and "\n" not in err
    assert not list(tmp_path.iterdir())


def test_cli_failed_checkpoint_exits_non_zero_unless_allowed(paths, tmp_path, capsys):
    ckpts, rel = paths
    broken = tmp_path / "step-600"
    shutil.copytree(ckpts[-1], broken)
    for f in broken.glob("*.safetensors"):
        f.write_bytes(b"garbage")
    assert main(_args([*ckpts[:2], str(broken)], rel, "--retries", "0")) == 1
    err = [line for line in capsys.readouterr().err.splitlines()
           if line.startswith("headmaps")]  # the rest is the progress bar
    assert len(err) == 1 and "1 checkpoint(s) failed" in err[0] and "step-600" in err[0]
    assert main(_args([*ckpts[:2], str(broken)], rel, "--retries", "0", "--allow-failed")) == 0


def test_cli_bad_steps_are_one_line(paths, capsys):
    ckpts, rel = paths
    assert main(_args(ckpts[:2], rel, "--steps", "7,3")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "strictly increasing" in err[0]
