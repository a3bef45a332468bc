"""The projection is one value: one resolver, one namer, and no ``preset`` triple elsewhere.

Walks every public function and method of the package: none takes ``preset`` (and so
none takes ``preset`` beside ``**options``) except :func:`headmaps.projection_for`, the
one resolver; :func:`headmaps.projection.label` is the one namer.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import headmaps
from headmaps import projection as P


def public_callables():
    """``(qualified name, callable)`` of every public function and method of headmaps."""
    seen = set()
    for info in pkgutil.walk_packages(headmaps.__path__, "headmaps."):
        if any(part.startswith("_") for part in info.name.split(".")[1:]):
            continue
        mod = importlib.import_module(info.name)
        for name, obj in vars(mod).items():
            if name.startswith("_") or getattr(obj, "__module__", "") != mod.__name__:
                continue
            members = [(name, obj)] if inspect.isfunction(obj) else [
                (f"{name}.{m}", f) for m, f in vars(obj).items()
                if not m.startswith("_") and inspect.isfunction(f)
            ] if inspect.isclass(obj) else []
            for qual, f in members:
                if id(f) not in seen:
                    seen.add(id(f))
                    yield f"{mod.__name__}.{qual}", f


def test_only_projection_for_takes_a_preset():
    takes = {name for name, f in public_callables()
             if "preset" in inspect.signature(f).parameters}
    assert takes == {"headmaps.projection.calibration.projection_for"}
    both = {name for name, f in public_callables()
            if "preset" in inspect.signature(f).parameters
            and any(p.kind is p.VAR_KEYWORD for p in inspect.signature(f).parameters.values())}
    assert both == {"headmaps.projection.calibration.projection_for"}


def test_one_resolver_and_one_namer():
    modules = [P, importlib.import_module("headmaps.projection.options"),
               importlib.import_module("headmaps.projection.calibration")]
    names = {n for m in modules for n, v in vars(m).items()
             if not n.startswith("_") and callable(v) and not inspect.isclass(v)}
    resolvers = {n for n in names if re.search(r"resolve|explicit|_for$", n)}
    namers = {n for n in names if re.search(r"label|name|describe", n)}
    assert resolvers == {"projection_for"}
    assert namers == {"label"}
    for gone in ("resolve", "resolve_options", "explicit", "preset_name", "describe_projection"):
        assert not any(hasattr(m, gone) for m in modules), gone
    assert headmaps.projection_for is P.projection_for


def test_every_entry_point_takes_projection_and_no_options():
    entries = [headmaps.scan, headmaps.relation_scores, headmaps.salient_operations,
               headmaps.salient_all, headmaps.attention_summary, headmaps.attention_logits,
               headmaps.attention_preferences, headmaps.positional_profile,
               headmaps.head_types, headmaps.analyse, headmaps.diff, headmaps.composition,
               headmaps.track, headmaps.score_descriptions]
    for f in entries:
        params = inspect.signature(f).parameters
        assert params["projection"].kind is inspect.Parameter.KEYWORD_ONLY, f.__name__
        assert "calibration" not in params and "stream_dtype" not in params, f.__name__
        # analyse's **load_options go to hm.load, not to the projection
        assert {n for n, p in params.items() if p.kind is p.VAR_KEYWORD} <= {"load_options"}, \
            f.__name__
