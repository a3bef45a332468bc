"""`headmaps head MODEL L.H`: a head's card: its salient operations (OV: what it writes), what it
attends to (QK: content preferences and positional profile), and a one-line description."""

from __future__ import annotations

import argparse
import re
from typing import Any

from ..errors import HeadmapsError
from .common import add_model_args, load_model

_HEAD = re.compile(r"^\s*(\d+)\.(\d+)\s*$")


def parse_head(text: str, model: Any = None) -> tuple[int, int]:
    """``"23.4"`` -> ``(23, 4)``, checked against ``model`` when given.

    Raises:
        HeadmapsError: not written ``LAYER.HEAD``.
        IndexError: out of the model's range (the message gives the valid ranges).
    """
    m = _HEAD.match(text)
    if not m:
        raise HeadmapsError(f"a head is written LAYER.HEAD, e.g. 23.4; got {text!r}")
    layer, head = int(m.group(1)), int(m.group(2))
    if model is not None and not (0 <= layer < model.n_layers and 0 <= head < model.n_heads):
        raise IndexError(f"head {layer}.{head} is out of range: {model.model_id} has layers "
                         f"0..{model.n_layers - 1} and heads 0..{model.n_heads - 1}")
    return layer, head


def add_describer_args(p: argparse.ArgumentParser, default: str = "pattern", allow_none: bool = True) -> None:
    """--describe, --base-url, --llm-model, --api-key, --llm-timeout, --llm-json."""
    choices = ["pattern", "llm", "none"] if allow_none else ["pattern", "llm"]
    p.add_argument("--describe", choices=choices, default=default,
                   help=f"how to describe the head(s) (default: {default})")
    p.add_argument("--base-url", default=None,
                   help="OpenAI-compatible endpoint for --describe llm, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--llm-model", default="gpt-4o", help="chat model name for --describe llm (default: gpt-4o)")
    p.add_argument("--api-key", default=None, help="API key (default: $OPENAI_API_KEY)")
    p.add_argument("--llm-timeout", type=float, default=60.0, help="seconds per LLM request (default 60)")
    p.add_argument("--llm-json", action="store_true",
                   help="ask the endpoint for JSON mode (response_format json_object)")


def add_salient_args(p: argparse.ArgumentParser) -> None:
    """--preset, --tokens, --mappings, --skip-nonwords."""
    p.add_argument("--preset", default="paper", help="projection preset: paper | norms | embedding (default paper)")
    p.add_argument("--tokens", type=int, default=15, help="salient source tokens (default 15)")
    p.add_argument("--mappings", type=int, default=5, help="targets per source token (default 5)")
    p.add_argument("--skip-nonwords", choices=["none", "source", "target", "both"], default="none",
                   help="drop punctuation, whitespace and byte-fragment tokens on this side (default none)")


def make_describer(args: argparse.Namespace):
    """The describer the arguments ask for, or None for ``--describe none``."""
    from ..describe import LLMDescriber, PatternDescriber

    if args.describe == "none":
        return None
    if args.describe == "pattern":
        return PatternDescriber()
    return LLMDescriber(args.llm_model, args.base_url, args.api_key, timeout=args.llm_timeout,
                        json_mode=args.llm_json)


def register(sub) -> None:
    """Add the ``head`` subcommand."""
    p = sub.add_parser("head", help="salient operations of one head, and a description",
                       description="Print the most salient source tokens of head LAYER.HEAD with their top "
                                   "target tokens (approach B of MAPS), then describe the pattern.")
    add_model_args(p, optional=False)
    p.add_argument("head", metavar="LAYER.HEAD", help="the head, e.g. 23.4 (Hugging Face numbering)")
    add_salient_args(p)
    add_describer_args(p)
    p.add_argument("--qk-preset", default=None,
                   help="projection preset of the QK half (default: the package default, norms: the "
                        "model's own logits for the source representations)")
    p.add_argument("--max-distance", type=int, default=32,
                   help="positional profile over distances 0..N (default 32)")
    p.add_argument("--no-qk", action="store_true", help="leave out what the head attends to")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    p.set_defaults(func=run)


def qk_card(model: Any, layer: int, head: int, preset: str | None, max_distance: int) -> tuple[Any, Any]:
    """The QK half of one head: ``(AttentionPreferences, PositionalProfile)`` from one pass."""
    from ..attention import attention_summary

    res = attention_summary(model, [layer], heads=[head], n_keys=8, n_queries=5, n_pairs=4,
                            max_distance=max_distance, preset=preset)
    prefs, prof = res.preferences(layer, 0), res.profile_at(layer, 0)
    prefs.head = prof.head = head
    return prefs, prof


def one_line(ops: Any, desc: Any, prefs: Any, prof: Any) -> str:
    """Both halves in one line: what the head writes (OV) and where it looks (QK)."""
    from ..attention import describe_qk
    from ..salient.tokens import visible

    if desc is not None and not desc.unclear and desc.text:
        writes = desc.text
    else:
        writes = "; ".join(f"{visible(s)} -> {visible(t[0])}" for s, t in ops.mappings[:3] if t)
    return f"{ops.name}: writes {writes} | {describe_qk(prefs, prof)}"


def run(args: argparse.Namespace) -> int:
    """Compute, print and describe one head."""
    import json

    from ..salient import salient_operations

    parse_head(args.head)  # format errors before loading anything
    describer = make_describer(args)
    model = load_model(args)
    layer, head = parse_head(args.head, model)
    skip = False if args.skip_nonwords == "none" else args.skip_nonwords
    ops = salient_operations(model, layer, head, n_tokens=args.tokens, n_mappings=args.mappings,
                             preset=args.preset, skip_nonwords=skip)
    desc = describer.describe(ops) if describer is not None else None
    if args.max_distance < 1:
        raise HeadmapsError(f"--max-distance must be at least 1, got {args.max_distance}")
    qk = None if args.no_qk else qk_card(model, layer, head, args.qk_preset, args.max_distance)
    if args.json:
        out = ops.to_dict()
        out["description"] = desc.to_dict() if desc is not None else None
        if qk is not None:
            out["attention"] = {"preferences": qk[0].to_dict(), "profile": qk[1].to_dict(),
                                "summary": one_line(ops, desc, *qk)}
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 0
    print(f"head {ops.name} of {model.model_id} (preset {ops.preset}, non-words skipped: {ops.skip_nonwords})")
    print(ops.table())
    if desc is not None:
        print()
        print(f"description ({desc.describer}): {desc.text}")
        if desc.input_strings and desc.input_strings not in desc.text:
            print(f"inputs: {desc.input_strings}")
        if not desc.unclear:
            print(f"confidence: {desc.confidence:.2f}")
        if desc.error:
            print(f"error: {desc.error}")
    if qk is not None:
        prefs, prof = qk
        print()
        print(f"what it attends to (QK, from parameters; preset {prof.preset}; content ignores position)")
        print(prefs.table())
        print(f"position ({prof.positions}): Δ=0..{len(prof.logits) - 1} {prof.sparkline()}")
        print(f"  kind: {prof.kind()}; Δ=1 {prof.prev_mass:.0%}, Δ=0 {prof.self_mass:.0%}, Δ<=4 {prof.local_mass:.0%}, "
              f"preferred Δ={prof.preferred_distance}; over random tokens: Δ=1 {prof.sampled_prev_mass:.0%}")
        print()
        print(one_line(ops, desc, prefs, prof))
    return 0
