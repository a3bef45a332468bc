"""`headmaps head MODEL L.H`: a head's card.

Its salient operations (OV: what it writes), what it attends to (QK: content preferences and
positional profile), a one-line description and, when the describer wrote a rule, the
description's offline score on held-out source tokens beside its shuffled baseline.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import HeadmapsError
from ..models import parse_head
from . import checks, common


def register(sub) -> None:
    """Add the ``head`` subcommand."""
    p = sub.add_parser("head", help="salient operations of one head, and a description",
                       description="Print head LAYER.HEAD's most salient source tokens and their "
                                   "top targets (approach B of MAPS); describe the pattern.")
    common.add_model_args(p)
    p.add_argument("head", metavar="LAYER.HEAD",
                   help="the head, e.g. 23.4 (Hugging Face numbering)")
    common.add_salient_args(p)
    common.add_describer_args(p)
    p.add_argument("--json", action="store_true",
                   help="print the result as JSON instead of a table")
    p.add_argument("--max-distance", type=checks.positive_int, default=32,
                   help="positional profile over distances 0..N (default 32)")
    p.add_argument("--no-qk", action="store_true", help="leave out what the head attends to")
    p.add_argument("--no-score", action="store_true",
                   help="do not score the description on held-out tokens (offline, when it "
                        "names a rule)")
    p.set_defaults(func=run)


def description_score(model: Any, ops: Any, desc: Any) -> Any:
    """The offline held-out score of ``desc`` (a :class:`DescriptionScore`), or None.

    None when the description names no rule (free words need an LLM scorer) or is
    unclear. Held out: salient tokens after the ``ops.n_tokens`` shown and
    saliency-weighted draws, never a shown one, under the projection of ``ops``;
    baseline: the rule on the held-out tokens of the layer's other heads.
    """
    from ..describe import score_descriptions
    from ..projection import Projection

    if desc is None or desc.unclear or not desc.rule:
        return None
    res = score_descriptions(model, [desc], method="offline", n_shown=ops.n_tokens,
                             k=max(1, ops.n_mappings),
                             projection=Projection.from_record(ops),
                             skip_nonwords=ops.skip_nonwords,
                             exclude={(ops.layer, ops.head): ops.token_ids.tolist()})
    return res.scores[0]


def score_line(desc: Any, score: Any) -> str:
    """The card's line about the description's score."""
    if desc.unclear:
        return "description score: none (no clear pattern to score)"
    if score is None:
        return ("description score: not scorable offline (the description names no rule; score "
                "it with an LLM: headmaps describe --score --scorer-url URL)")
    if not score.scored:
        return f"description score: not measured ({score.reason})"
    return (f"description score (offline, held-out): {score.score:.2f} vs baseline "
            f"{score.baseline:.2f} ({score.n} held-out tokens, hit = the rule's target in the "
            f"head's top {score.k}; baseline: the rule on the layer's other heads)")


def qk_card(model: Any, layer: int, head: int, projection: Any,
            max_distance: int) -> tuple[Any, Any]:
    """The QK half of one head: ``(AttentionPreferences, PositionalProfile)`` from one pass.

    Args:
        model: the model.
        layer: the head's layer.
        head: the head.
        projection: the projection (a :class:`~headmaps.projection.Projection`, a preset
            name...; see :func:`~headmaps.projection.projection_for`).
        max_distance: the positional profile's last distance.
    """
    from ..attention import attention_summary

    res = attention_summary(model, [layer], heads=[head], n_keys=8, n_queries=5, n_pairs=4,
                            max_distance=max_distance, projection=projection)
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

    from ..describe import get_describer
    from ..salient import salient_operations

    parse_head(args.head)  # format errors before loading anything
    describer = get_describer(args.describe, common.llm_options(args))
    model = common.load_model(args)
    layer, head = parse_head(args.head, model)
    proj = common.projection(args, model)
    skip = False if args.skip_nonwords == "none" else args.skip_nonwords
    ops = salient_operations(model, layer, head, n_tokens=args.tokens, n_mappings=args.mappings,
                             skip_nonwords=skip, projection=proj)
    desc = describer.describe(ops) if describer is not None else None
    score = None if desc is None or args.no_score else description_score(model, ops, desc)
    if args.max_distance < 1:
        raise HeadmapsError(f"--max-distance must be at least 1, got {args.max_distance}")
    qk = None if args.no_qk else qk_card(model, layer, head, proj, args.max_distance)
    if args.json:
        out = ops.to_dict()
        out["description"] = desc.to_dict() if desc is not None else None
        if desc is not None and not args.no_score:
            out["description_score"] = None if score is None else {
                k: (None if isinstance(v, float) and v != v else v)  # NaN -> null
                for k, v in score.__dict__.items()
                if k in ("method", "score", "baseline", "n", "n_excluded", "k", "baseline_n",
                         "reason", "tokens", "hits")}
        if qk is not None:
            out["attention"] = {"preferences": qk[0].to_dict(), "profile": qk[1].to_dict(),
                                "summary": one_line(ops, desc, *qk)}
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 0
    print(f"head {ops.name} of {model.model_id} (projection {common.projection_label(ops)}, "
          f"non-words skipped: {ops.skip_nonwords})")
    print(ops.text())
    if desc is not None:
        print()
        print(f"description ({desc.describer}): {desc.text}")
        if desc.input_strings and desc.input_strings not in desc.text:
            print(f"inputs: {desc.input_strings}")
        if not desc.unclear:
            print(f"confidence: {desc.confidence:.2f}")
        if desc.error:
            print(f"error: {desc.error}")
        if not args.no_score:
            print(score_line(desc, score))
    if qk is not None:
        prefs, prof = qk
        print()
        print(f"what it attends to (QK, from parameters; preset {prof.preset}; content ignores "
              "position)")
        print(prefs.text())
        print(f"position ({prof.positions}): Δ=0..{len(prof.logits) - 1} {prof.sparkline()}")
        print(f"  kind: {prof.kind()}; Δ=1 {prof.prev_mass:.0%}, Δ=0 {prof.self_mass:.0%}, Δ<=4 "
              f"{prof.local_mass:.0%}, "
              f"preferred Δ={prof.preferred_distance}; over random tokens: Δ=1 "
              f"{prof.sampled_prev_mass:.0%}")
        print()
        print(one_line(ops, desc, prefs, prof))
    return 0
