"""Every command takes the shared option groups of cli/common.py, with the same defaults."""

from __future__ import annotations

import argparse

import pytest

from headmaps.cli import build_parser
from headmaps.models import DEFAULT_MODEL
from headmaps.projection import DEFAULT_PRESET

MODEL_OPTIONS = {"model", "device", "dtype", "lazy", "allow_pickle"}
PROJECTION_OPTIONS = {"preset", "source", "fold_norms", "biases", "scale_embeddings"}
DESCRIBER_OPTIONS = {"describe", "base_url", "llm_model", "api_key", "llm_timeout", "llm_json"}


def subparser(*path: str) -> argparse.ArgumentParser:
    p = build_parser()
    for name in path:
        sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        p = sub.choices[name]
    return p


def options(*path: str) -> dict[str, argparse.Action]:
    return {a.dest: a for a in subparser(*path)._actions}


@pytest.mark.parametrize("path", [("info",), ("scan",), ("head",), ("describe",), ("validate",),
                                  ("report",), ("relations", "coverage")])
def test_model_options_everywhere(path):
    opts = options(*path)
    assert MODEL_OPTIONS <= set(opts)
    assert opts["model"].default == DEFAULT_MODEL  # MODEL may be left out everywhere


@pytest.mark.parametrize("path", [("scan",), ("head",), ("describe",), ("validate",)])
def test_projection_options_and_one_default(path):
    opts = options(*path)
    assert PROJECTION_OPTIONS <= set(opts)
    assert opts["preset"].default is None  # None: projection.DEFAULT_PRESET, like the library
    assert DEFAULT_PRESET in opts["preset"].help


@pytest.mark.parametrize("path", [("head",), ("describe",)])
def test_describer_options(path):
    assert DESCRIBER_OPTIONS <= set(options(*path))


def test_head_model_may_be_left_out():
    args = build_parser().parse_args(["head", "23.4"])
    assert (args.model, args.head) == (DEFAULT_MODEL, "23.4")


def test_big_model_args_reach_the_loader(model_dir, tmp_path):
    """--max-memory/--offload-folder parse into a dispatched model (blocks on disk)."""
    import argparse

    from headmaps.cli import common

    p = argparse.ArgumentParser()
    common.add_model_args(p)
    common.add_big_model_args(p)
    args = p.parse_args([model_dir, "--max-memory", "cpu=1kB", "--offload-folder",
                         str(tmp_path)])
    assert common.big_model_kwargs(args) == {"max_memory": "cpu=1kB",
                                             "offload_folder": str(tmp_path)}
    model = common.load_model(args)
    assert "disk" in set(model.hf_model.hf_device_map.values())


def test_bad_big_model_args_are_one_line_errors(model_dir, capsys):
    import headmaps.cli as cli

    for flags, says in ((["--max-memory", "cpu:2GiB"], "DEVICE=SIZE"),
                        (["--device-map", "everywhere"], "unknown device_map 'everywhere'")):
        assert cli.main(["validate", model_dir, "--experiment", "correlation", *flags]) == 2
        err = capsys.readouterr().err
        assert err.startswith("headmaps") and "error: " in err and says in err
        assert err.count("\n") == 1


def test_command_line_is_the_command_as_typed():
    """A result records the arguments it was run with, quoted so that they parse back."""
    import shlex

    from headmaps.cli import common

    parser = build_parser()
    argv = ["scan", "m", "--source", "token_alone", "--prefix", "<|endoftext|>", "--fold-norms",
            "--no-biases"]
    args = parser.parse_args(argv)
    line = common.command_line(args)
    assert line == "headmaps scan m --source token_alone --prefix '<|endoftext|>' --fold-norms " \
                   "--no-biases"
    again = parser.parse_args(shlex.split(line)[1:])
    assert common.projection_of(again).keywords == common.projection_of(args).keywords
