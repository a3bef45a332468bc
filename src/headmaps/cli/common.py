"""Argument groups shared by subcommands, each defined once.

The groups: model, big-model placement, projection, salient operations, describer,
relation lists, and the parts of :func:`headmaps.analyse` (shared by ``analyse`` and
``report``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..models import DEFAULT_MODEL
from . import checks


def add_model_args(p: argparse.ArgumentParser) -> None:
    """MODEL positional plus --device, --dtype, --lazy and --allow-pickle.

    MODEL is an alias, hub id, folder or .gguf file; default the built-in SmolLM2.
    """
    p.add_argument("model", nargs="?", default=DEFAULT_MODEL,
                   help=f"alias, hub id, folder or .gguf file (default: {DEFAULT_MODEL})")
    add_load_args(p)


def add_load_args(p: argparse.ArgumentParser) -> None:
    """--device, --dtype, --lazy and --allow-pickle (how a model is loaded; no positional)."""
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default cpu)")
    p.add_argument("--dtype", default=None,
                   help="float32 | bfloat16 | float16 (default: checkpoint's)")
    p.add_argument("--lazy", action="store_true", default=None,
                   help="read a safetensors checkpoint tensor by tensor (big models; "
                        "automatic when the weights exceed half the free memory)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="let --lazy read .bin pickle checkpoints (only for files you trust)")


def add_big_model_args(p: argparse.ArgumentParser) -> None:
    """--device-map, --max-memory and --offload-folder: run a model bigger than one device.

    Read by :func:`load_model` (see :mod:`headmaps.models.bigmodel`); a command that runs
    the model adds them with this one call.
    """
    g = p.add_argument_group("models bigger than one device (need accelerate)")
    g.add_argument("--device-map", default=None, metavar="STRATEGY",
                   help="spread the model's forward passes over the GPUs, CPU and disk: "
                        "auto | balanced | balanced_low_0 | sequential (accelerate)")
    g.add_argument("--max-memory", default=None, metavar="DEVICE=SIZE,...",
                   type=checks.memory_spec,
                   help="memory per device, e.g. 0=70GiB,1=70GiB,cpu=100GiB or "
                        "cpu=2GiB,disk=50GiB (implies --device-map auto)")
    g.add_argument("--offload-folder", default=None, metavar="DIR",
                   help="folder for the modules offloaded to disk")


def big_model_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``device_map``/``max_memory``/``offload_folder`` for :func:`headmaps.load`, given ones only.

    The values are checked by :func:`headmaps.load` (a bad one is a one-line error).
    """
    kw = {"device_map": getattr(args, "device_map", None),
          "max_memory": getattr(args, "max_memory", None),
          "offload_folder": getattr(args, "offload_folder", None)}
    return {k: v for k, v in kw.items() if v is not None}


def load_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of :func:`headmaps.load` from :func:`add_model_args`.

    Includes the big-model options of :func:`add_big_model_args` when given.
    """
    return {"device": args.device, "dtype": args.dtype, "lazy": getattr(args, "lazy", None),
            "allow_pickle": getattr(args, "allow_pickle", False), **big_model_kwargs(args)}


def load_model(args: argparse.Namespace):
    """Load the model named by ``args`` (see :func:`add_model_args`, :func:`add_big_model_args`)."""
    from ..models import load

    return load(args.model, **load_options(args))


def add_relation_args(p: argparse.ArgumentParser, *, none: bool = False,
                      tau_help: str = "threshold for 'implements'",
                      pairs_help: str = "single-token pairs a relation needs") -> None:
    """``--relations``, ``--k``, ``--tau`` and ``--min-pairs``, as every scoring command has them.

    Args:
        p: the subcommand's parser.
        none: ``--relations none`` is accepted (the command has other work without them).
        tau_help: what ``--tau`` means for this command.
        pairs_help: what ``--min-pairs`` counts for this command.
    """
    from ..relations import MIN_PAIRS
    from ..scoring.results import DEFAULT_TAU

    p.add_argument("--relations", default="all",
                   help="'all', " + ("'none', " if none else "")
                        + "or comma-separated names and/or paths to JSON/CSV pair files")
    p.add_argument("--k", type=checks.positive_int, default=None,
                   help="top-k for every relation (default: per relation)")
    p.add_argument("--tau", type=checks.unit_interval, default=DEFAULT_TAU,
                   help=f"{tau_help} (default {DEFAULT_TAU})")
    p.add_argument("--min-pairs", type=checks.positive_int, default=MIN_PAIRS,
                   help=f"{pairs_help} (default {MIN_PAIRS})")


def add_projection_args(p: argparse.ArgumentParser) -> None:
    """--preset and the projection option overrides."""
    from ..projection import DEFAULT_PRESET, PRESETS, SOURCE_KINDS, STREAM_DTYPE_CHOICES

    p.add_argument("--preset", default=None, choices=sorted(PRESETS),
                   help="projection preset (default: the model's calibration from `headmaps "
                        f"calibrate`, else {DEFAULT_PRESET})")
    p.add_argument("--source", default=None, choices=SOURCE_KINDS,
                   help="source representation for layers > 0 (overrides the preset; "
                        "token_alone: the token run alone through the earlier blocks)")
    p.add_argument("--fold-norms", default=None, action=argparse.BooleanOptionalAction,
                   help="fold norm gains into the projection (overrides the preset)")
    p.add_argument("--biases", default=None, action=argparse.BooleanOptionalAction,
                   help="include value and output biases (overrides the preset)")
    p.add_argument("--scale-embeddings", default=None, action=argparse.BooleanOptionalAction,
                   help="multiply embeddings by the model's scale, e.g. Gemma (overrides the "
                        "preset)")
    p.add_argument("--prefix", default=None, metavar="TOKEN",
                   help="with --source token_alone: a token placed before each source, as the "
                        "tokenizer spells it (e.g. '<|endoftext|>', '<bos>')")
    p.add_argument("--no-calibration", action="store_true",
                   help="ignore the model's stored calibration (use the default projection)")
    p.add_argument("--stream-dtype", default=None, choices=STREAM_DTYPE_CHOICES,
                   help="compute dtype of the whole-vocabulary stream (default auto: "
                        "bfloat16 where the device computes it natively, else float32; a "
                        "bfloat16 stream is a screen whose answers are decided in float32)")


def projection_of(args: argparse.Namespace, made: Any = None) -> Any:
    """The projection :func:`add_projection_args` ask for, as a function of the model.

    ``projection_for(model, --preset, calibration=..., overrides...)`` once the model is
    loaded: pass it as ``projection=`` where the call loads the model itself
    (``analyse``, ``track``), or call it on the model (:func:`projection`). ``made``: a
    saved result the command continues (a scan): its projection, of which the flags may
    then only set the stream dtype.
    """
    from functools import partial

    from ..projection import Projection, projection_for

    kw = {"source": args.source, "fold_norms": args.fold_norms,
          "scale_embeddings": args.scale_embeddings, "prefix": getattr(args, "prefix", None),
          "stream_dtype": getattr(args, "stream_dtype", None)}
    if args.biases is not None:
        kw["value_bias"] = kw["output_bias"] = args.biases
    kw = {k: v for k, v in kw.items() if v is not None}
    if made is not None:
        return lambda model: projection_for(model, Projection.from_record(made), **kw)
    no_cal = getattr(args, "no_calibration", False)
    return partial(projection_for, preset=args.preset, calibration=False if no_cal else None,
                   **kw)


def projection(args: argparse.Namespace, model: Any) -> Any:
    """The one :class:`~headmaps.projection.Projection` of a command, resolved on ``model``."""
    return projection_of(args)(model)


def command_line(args: argparse.Namespace) -> str:
    """The command that was run, as typed: ``headmaps validate m --experiment causal``."""
    import shlex

    return shlex.join(["headmaps", *getattr(args, "argv", [])])


def save_kwargs(args: argparse.Namespace) -> dict[str, bool]:
    """``{"show_paths": ...}`` for a result's ``save``: ``headmaps --show-paths`` keeps local paths.

    False when the arguments come from a command's own parser (no top-level flags).
    """
    return {"show_paths": bool(getattr(args, "show_local_paths", False))}


def save_folder(out: str | Path, result: Any, summary: str, args: argparse.Namespace,
                figure: Callable[[], Any] | None = None, figure_file: str = "") -> Path:
    """Write ``result`` (its ``save``), ``summary.md`` and a figure into the folder ``out``.

    Every file or none (a staged folder). ``figure`` builds the matplotlib figure written as
    ``figure_file`` at 150 dpi; None writes none.

    Returns:
        The folder written.
    """
    from ..io import staged_folder, write_figure, write_text

    out = Path(out)
    with staged_folder(out) as tmp:  # every file or none
        result.save(tmp, **save_kwargs(args))
        write_text(tmp / "summary.md", summary)
        if figure is not None:
            write_figure(figure(), tmp / figure_file, dpi=150)
    return out


def written(folder: Path) -> str:
    """``wrote a, b and c under folder/``: what a folder holds, for the command's last line."""
    names = sorted(p.name for p in Path(folder).iterdir())
    listed = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else "".join(names)
    return f"wrote {listed} under {folder}/"


def projection_label(result) -> str:
    """The projection a result used, as printed.

    ``calibrated mlp0+fold (median r 0.79 on 64 pairs)`` when a stored calibration chose
    it, ``through (after <bos>) (uncalibrated)`` for the default without one, else the
    preset name (or a custom projection's options).
    """
    from ..projection.calibration import label

    return label(result.preset, result.options, getattr(result, "calibration", None))


def parse_relations(text: str) -> str | list[str]:
    """``--relations``: ``all``, or a comma-separated list of names and/or file paths."""
    text = text.strip()
    return "all" if text == "all" else [r.strip() for r in text.split(",") if r.strip()]


def add_salient_args(p: argparse.ArgumentParser) -> None:
    """--tokens, --mappings, --skip-nonwords and the projection options."""
    add_projection_args(p)
    p.add_argument("--tokens", type=checks.positive_int, default=15,
                   help="salient source tokens (default 15)")
    p.add_argument("--mappings", type=checks.positive_int, default=5,
                   help="targets per source token (default 5)")
    p.add_argument("--skip-nonwords", choices=["none", "source", "target", "both"], default="none",
                   help="drop punctuation, whitespace and byte-fragment tokens on this side "
                        "(default none)")


def add_describer_args(p: argparse.ArgumentParser, default: str = "pattern",
                       allow_none: bool = True) -> None:
    """--describe, --base-url, --llm-model, --api-key, --llm-timeout, --llm-json."""
    from ..describe import DESCRIBE_CHOICES, DESCRIBERS

    choices = list(DESCRIBE_CHOICES if allow_none else DESCRIBERS)
    p.add_argument("--describe", choices=choices, default=default,
                   help=f"how to describe the head(s) (default: {default})")
    p.add_argument("--base-url", default=None,
                   help="OpenAI-compatible endpoint for --describe llm, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--llm-model", default="gpt-4o",
                   help="chat model name for --describe llm (default: gpt-4o)")
    p.add_argument("--api-key", default=None, help="API key (default: $OPENAI_API_KEY)")
    p.add_argument("--llm-timeout", type=checks.positive_float, default=60.0,
                   help="seconds per LLM request (default 60)")
    p.add_argument("--llm-json", action="store_true",
                   help="ask the endpoint for JSON mode (response_format json_object)")


def llm_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of :class:`~headmaps.describe.LLMDescriber` from the describer options."""
    return {"model": args.llm_model, "base_url": args.base_url, "api_key": args.api_key,
            "timeout": args.llm_timeout, "json_mode": getattr(args, "llm_json", False)}


def add_analyse_args(p: argparse.ArgumentParser) -> None:
    """The parts of :func:`headmaps.analyse`, the projection and the describer options.

    --scan, --relations, --no-salient, --no-attention, --no-types, --salient,
    --descriptions, and the projection options of `scan` (--preset, --source, --prefix,
    --no-calibration...).
    """
    from pathlib import Path

    p.add_argument("--scan", type=Path, default=None,
                   help="a saved scan (folder with scores.parquet, or the file) instead of "
                        "scanning now")
    p.add_argument("--relations", default="all",
                   help="relations to scan when there is no --scan: 'all', or comma-separated "
                        "names and/or JSON/CSV files")
    p.add_argument("--no-salient", action="store_true",
                   help="no salient operations or descriptions")
    p.add_argument("--no-attention", action="store_true",
                   help="skip the QK half (what each head attends to)")
    p.add_argument("--no-types", action="store_true",
                   help="skip the head types (previous-token, induction, copying...)")
    p.add_argument("--salient", type=Path, default=None, metavar="PATH",
                   help="saved salient operations (SalientAll.save) instead of computing them")
    p.add_argument("--descriptions", type=Path, default=None, metavar="PATH",
                   help="saved descriptions (descriptions.jsonl) instead of describing now")
    p.add_argument("--score-descriptions", action="store_true",
                   help="score every description offline on held-out source tokens (a pattern "
                        "description's rule predicts the head's targets; one more vocabulary "
                        "pass); the report shows the score and its shuffled baseline")
    p.add_argument("--description-scores", type=Path, default=None, metavar="PATH",
                   help="saved description scores (headmaps describe --score: "
                        "description_scores.parquet) instead of scoring now")
    add_projection_args(p)
    add_describer_args(p)


def analyse_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of :func:`headmaps.analyse` from :func:`add_analyse_args`."""
    salient: Any = not args.no_salient
    if salient and args.salient is not None:
        from ..salient import SalientAll

        salient = SalientAll.load(args.salient)
    descriptions = None
    if args.descriptions is not None:
        from ..describe import load_descriptions

        descriptions = load_descriptions(args.descriptions)
    scores: Any = args.score_descriptions
    if args.description_scores is not None:
        from ..describe import DescriptionScores

        scores = DescriptionScores.load(args.description_scores)
    scan = None
    if args.scan is not None:  # the parts continue its projection
        from ..scoring.results import ScanResult

        scan = ScanResult.load(args.scan)
    return {"scan": scan, "relations": parse_relations(args.relations), "salient": salient,
            "describe": args.describe if salient is not False else "none",
            "llm_options": llm_options(args), "descriptions": descriptions,
            "score_descriptions": scores,
            "attention": not args.no_attention, "head_types": not args.no_types, "progress": True,
            "projection": projection_of(args, scan if scan is not None and scan.options
                                        else None)}


def analyse_model(args: argparse.Namespace):
    """Run :func:`headmaps.analyse` as the arguments ask; the model is loaded only if needed."""
    from ..headreport import analyse

    return analyse(args.model, **analyse_kwargs(args), **load_options(args))
