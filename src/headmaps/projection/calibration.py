"""Stored projection calibrations: which projection agrees best with inference, per model.

:func:`headmaps.calibrate` (in :mod:`headmaps.experiments.calibrate`) measures it; this
module keeps the result and applies it. A :class:`Calibration` is one JSON file, kept
in the headmaps cache under ``calibrations/<model id>-<fingerprint>.json``
(``$HEADMAPS_CALIBRATIONS`` overrides the folder, ``$HEADMAPS_CACHE`` the cache root)
and keyed by the model's id plus :func:`fingerprint`, a hash of a few weight slices, so
a calibration never follows a name onto other weights.

:func:`projection_for` is the one place that decides the projection of a run, into a
:class:`Projection`: an explicit preset or projection option always wins; otherwise the
stored calibration of the model (unless ``calibration=False``, the CLI's
``--no-calibration``); otherwise :data:`~headmaps.projection.DEFAULT_PRESET`, recorded as
"uncalibrated". Each result records what happened in its ``calibration`` dict (empty for
an explicit projection); :func:`label` is the one way a projection is printed.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import CorruptFileError, HeadmapsError, MissingFileError
from ..io import write_json
from . import options as P
from . import vocabulary as V
from .fingerprint import fingerprint, memoised_fingerprint
from .precision import check_choice
from .prefix import concrete

logger = logging.getLogger(__name__)

#: Environment variable: the folder of stored calibrations.
DIR_ENV = "HEADMAPS_CALIBRATIONS"
KIND = "headmaps.Calibration"


@dataclass
class Calibration:
    """The projection chosen for one model by a calibration run.

    Attributes:
        model_id: the model's id.
        fingerprint: :func:`fingerprint` of its weights.
        choice: the chosen candidate's name (a preset name, or e.g. ``mlp0+fold``).
        options: its :class:`~headmaps.projection.ProjectionOptions` as a dict.
        median_r: its median Pearson r without context over the sample's relations.
        n_pairs: pairs in the sample (summed over relations; each is run on every template).
        candidates: one dict per candidate: ``name``, ``options``, ``median_r`` (without
            context), ``median_r_with_context``, ``n_relations`` (with a defined r),
            ``complexity``; in the order tried.
        sample: what was run: ``relations`` (relation -> pairs), ``templates``, ``seed``,
            ``max_pairs``, ``k``, ``skipped``.
        rule: the selection rule, in words.
        seconds: wall time of the run.
        versions: library versions.
    """

    model_id: str
    fingerprint: str
    choice: str
    options: dict[str, Any]
    median_r: float
    n_pairs: int
    candidates: list[dict[str, Any]] = field(default_factory=list)
    sample: dict[str, Any] = field(default_factory=dict)
    rule: str = ""
    seconds: float = 0.0
    versions: dict[str, str] = field(default_factory=dict)

    def projection(self) -> P.ProjectionOptions:
        """The chosen projection options."""
        return P.ProjectionOptions(**self.options)

    def label(self) -> str:
        """How the projection is printed: ``calibrated mlp0+fold (median r 0.79 on 64 pairs)``."""
        return f"calibrated {self.choice} (median r {self.median_r:.2f} on {self.n_pairs} pairs)"

    def info(self, path: str | os.PathLike | None = None) -> dict[str, Any]:
        """The ``calibration`` dict a result records when this calibration chose its projection."""
        out = {"status": "calibrated", "label": self.label(), "choice": self.choice,
               "median_r": self.median_r, "n_pairs": self.n_pairs,
               "fingerprint": self.fingerprint, "seed": self.sample.get("seed")}
        if path is not None:
            out["file"] = str(path)
        return out

    def to_frame(self) -> Any:
        """The candidates as a DataFrame, best median r first."""
        import pandas as pd

        frame = pd.DataFrame(self.candidates)
        if frame.empty:
            return frame
        return frame.sort_values("median_r", ascending=False, kind="stable").reset_index(drop=True)

    def _candidates(self) -> Any:
        cols = ["name", "median_r", "median_r_with_context", "n_relations"]
        frame = self.to_frame()
        return frame[[c for c in cols if c in frame.columns]]

    def _repr_html_(self) -> str:
        """Jupyter: the choice, then the candidates tried (best median r first)."""
        from .._html import html_card

        return html_card(f"calibration of {self.model_id or 'model'}: {self.label()}",
                         self._candidates(), [self.rule] if self.rule else [])

    def summary_markdown(self) -> str:
        """Markdown: the choice, the rule and the candidates tried."""
        from ..io import markdown_table

        lines = [f"# Calibration of {self.model_id}", "", f"{self.label()}; fingerprint "
                 f"`{self.fingerprint}`.", ""]
        lines += [self.rule, ""] if self.rule else []
        lines += [markdown_table(self._candidates(), digits=3), ""] if self.candidates else []
        return "\n".join(lines)

    def figure(self) -> Any:
        """The candidates' median r without context as bars, the chosen one darker (a Figure)."""
        from ..figures import bars_figure

        frame = self.to_frame()
        names = [str(n) for n in frame.get("name", [])]
        chosen = names.index(self.choice) if self.choice in names else None
        return bars_figure(names, frame["median_r"].to_numpy(dtype=float) if names else [],
                           xlabel="median Pearson r (without context)", highlight=chosen,
                           title=f"calibration of {self.model_id}: {self.choice}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (the file format)."""
        return {"kind": KIND, **asdict(self)}

    def save(self, path: str | os.PathLike) -> Path:
        """Write this calibration as JSON to ``path`` (atomic; a folder gets calibration.json)."""
        path = Path(path)
        if not path.suffix:
            path = path / "calibration.json"
        if path.suffix.lower() != ".json":
            raise HeadmapsError(f"cannot save a calibration to {path}: use a .json file")
        d = self.to_dict()
        d["median_r"] = _json_float(d["median_r"])
        for c in d["candidates"]:
            for key in ("median_r", "median_r_with_context"):
                if key in c:
                    c[key] = _json_float(c[key])
        write_json(path, d)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Calibration:
        """Read a calibration written by :meth:`save` (the file, or its folder)."""
        path = Path(path)
        if path.is_dir():
            path = path / "calibration.json"
        if not path.is_file():
            raise MissingFileError(f"no calibration file at {path}")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, OSError) as err:
            raise CorruptFileError(f"cannot read calibration {path}: {err}") from err
        if not isinstance(d, dict) or d.get("kind") != KIND:
            raise CorruptFileError(f"{path} is not a headmaps calibration")
        try:
            d.pop("kind")
            cal = cls(**d)
            cal.median_r = float("nan") if cal.median_r is None else float(cal.median_r)
            cal.projection()
        except (TypeError, HeadmapsError) as err:
            raise CorruptFileError(f"{path}: not a valid calibration: {err}") from err
        return cal


def _json_float(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


# ---- identity and the store --------------------------------------------------------------
def calibration_dir() -> Path:
    """Where calibrations are stored: ``$HEADMAPS_CALIBRATIONS`` or ``<cache>/calibrations``."""
    from ..models.cache import cache_root

    override = os.environ.get(DIR_ENV)
    return Path(override).expanduser() if override else cache_root() / "calibrations"


def calibration_path(model: Any) -> Path:
    """The file of ``model``'s calibration in the store (it may not exist)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model.model_id or "model").strip("._") or "model"
    return calibration_dir() / f"{slug[:80]}-{fingerprint(model)}.json"


def check_store_writable() -> Path:
    """The calibration folder, or a one-line error when it cannot be written (before a run)."""
    from ..io import check_writable

    try:
        return check_writable(calibration_dir(), "the calibration store")
    except HeadmapsError as err:
        raise HeadmapsError(f"{err} (or set {DIR_ENV} to a writable folder, or pass "
                            "--no-store / save=False)") from None


def store(cal: Calibration, model: Any) -> Path:
    """Save ``cal`` as ``model``'s calibration in the store; returns the file."""
    if cal.fingerprint != fingerprint(model):
        raise HeadmapsError(f"this calibration was made on other weights (fingerprint "
                            f"{cal.fingerprint}, model {fingerprint(model)})")
    return cal.save(calibration_path(model))


def load_calibration(model: Any, path: str | os.PathLike | None = None) -> Calibration | None:
    """``model``'s stored calibration, or None when it has none.

    Args:
        model: a HeadModel.
        path: read this file instead of the store; its fingerprint must match the model.

    Raises:
        HeadmapsError: ``path`` is missing, unreadable or made on other weights.
    """
    if path is None:
        p = calibration_path(model)
        if not p.is_file():
            return None
        return Calibration.load(p)
    cal = Calibration.load(path)
    if cal.fingerprint != fingerprint(model):
        raise HeadmapsError(f"{path} calibrates other weights ({cal.model_id}, fingerprint "
                            f"{cal.fingerprint}); this model's fingerprint is {fingerprint(model)}")
    return cal


def _resolve(model: Any, preset: str | P.ProjectionOptions | None, overrides: dict[str, Any],
             calibration: bool | None) -> tuple[P.ProjectionOptions, str, dict[str, Any]]:
    """``(options, name, calibration record)`` of a projection asked for by name or options.

    ``overrides["stream_dtype"]`` (how the stream is computed) never makes a projection
    explicit: it applies to whichever projection is chosen. ``prefix="auto"`` is replaced
    by the model's token and the stream dtype decided for its device.
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    stream = overrides.pop("stream_dtype", None)  # how the stream runs, not which projection

    def run_as(opts: P.ProjectionOptions) -> P.ProjectionOptions:
        if stream is not None:
            opts = replace(opts, stream_dtype=check_choice(stream), stream_reason="")
        return concrete(model, opts)

    if preset is not None or overrides:
        opts = P._options(preset, overrides)
        return run_as(opts), P._preset_name(opts), {}
    use = calibration is None or bool(calibration)
    unreadable = None
    if use:
        try:
            cal = load_calibration(model)
        except CorruptFileError as err:  # never load a damaged entry: warn, use the default
            logger.warning("%s; using the default projection (`headmaps calibrate` writes it "
                           "again, `headmaps cache clean` removes it)", err)
            cal, unreadable = None, calibration_path(model).name
        if cal is not None:  # the calibrating machine's stream precision does not carry over
            opts = run_as(replace(cal.projection(), stream_dtype="auto", stream_reason=""))
            return opts, P._preset_name(opts), cal.info(calibration_path(model))
    info: dict[str, Any] = {"status": "uncalibrated"}
    if not use:
        info["reason"] = "calibration disabled"
    elif unreadable is not None:
        info["reason"] = f"stored calibration {unreadable} is unreadable"
    return run_as(P.PRESETS[P.DEFAULT_PRESET]), P.DEFAULT_PRESET, info


@dataclass(frozen=True)
class Projection:
    """A projection resolved once for one model: pass it as ``projection=`` everywhere.

    Made by :func:`projection_for` (``hm.projection_for``), the one resolver: explicit
    options win, else the model's stored calibration, else
    :data:`~headmaps.projection.DEFAULT_PRESET`, decided once. Every entry point takes
    it as ``projection=`` and uses it as it is (no second look at the calibration store),
    so a scan, the salient operations, the QK half, the head types and an experiment of
    one analysis record the same projection.

    Attributes:
        options: the concrete :class:`~headmaps.projection.ProjectionOptions` (prefix
            resolved, the stream's dtype decided for the model's device).
        name: the preset's name, or ``custom``.
        calibration: how it was chosen (``{}`` explicit, ``{"status": "uncalibrated"}``
            the default, or the stored calibration's record).
        model_id: the model it was resolved for.
        fingerprint: that model's weights' :func:`fingerprint` where it was already known
            (a stored calibration was looked up), else empty until another model object
            is met: the weights are then compared (another model refuses it). Reading
            them only then keeps a lazy checkpoint's tensors read once per analysis.
    """

    options: P.ProjectionOptions
    name: str
    calibration: dict[str, Any] = field(default_factory=dict)
    model_id: str = ""
    fingerprint: str = field(default="", compare=False)
    #: a weak reference to the model it was resolved for (not pickled, not compared)
    _owner: Any = field(default=None, compare=False, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_owner"}

    @property
    def label(self) -> str:
        """How it is printed, with its calibration status (:func:`label`)."""
        return label(self.name, self.options, self.calibration)

    def record(self) -> dict[str, Any]:
        """What a result records of it (:func:`record`)."""
        return record(self.name, self.options, self.calibration)

    def header(self) -> dict[str, Any]:
        """The fields a result keeps: ``preset`` (the name), ``options`` and ``calibration``."""
        return {"preset": self.name, "options": self.options.to_dict(),
                "calibration": dict(self.calibration)}

    def vocabulary(self, model: Any) -> Any:
        """The whole vocabulary's ``token_alone`` stream in this projection, to share.

        :func:`~headmaps.projection.vocabulary_sources` of the options for ``model``: a
        :class:`~headmaps.projection.Sources` whose ``at(layer)`` is ``(V, d_model)``;
        give it as ``sources=`` to the salient operations, the QK half and (a subset)
        the head types, stepped together by :func:`headmaps.steps.run_steps`, and the
        stream advances through the blocks once for all of them. None for the block-0
        sources, which each part computes for itself at the cost of one MLP pass.
        """
        if self.options.source != "token_alone":
            return None
        return V.vocabulary_sources(model, self.options)

    def for_salient(self) -> Projection:
        """The projection salient operations read.

        Under ``paper`` (the reference implementation) they also read the first-MLP
        source at layer 0 (``mlp0_at_layer0=True``), as the reference code does; any
        other projection is read as it is.
        """
        if self.name != "paper" or self.options.mlp0_at_layer0:
            return self
        return replace(self, options=replace(self.options, mlp0_at_layer0=True))

    @classmethod
    def from_record(cls, result: Any) -> Projection:
        """The projection a result recorded (its ``preset``, ``options``, ``calibration``).

        Not bound to weights: the first model it is used with binds it (see
        :func:`projection_for`). Used to compute more parts exactly as a saved scan did.
        """
        rec = record_of(result)
        return cls(P.ProjectionOptions(**rec["options"]), rec["preset"], rec["calibration"],
                   str(getattr(result, "model_id", "") or ""))

    def _bound_to(self, model: Any, overrides: dict[str, Any],
                  calibration: bool | None) -> Projection:
        """This projection for ``model``: checked against its weights, stream dtype applied."""
        overrides = {k: v for k, v in overrides.items() if v is not None}
        stream = overrides.pop("stream_dtype", None)
        if overrides or calibration is not None:
            given = sorted(overrides) + (["calibration"] if calibration is not None else [])
            raise HeadmapsError(f"projection options ({', '.join(given)}) beside a resolved "
                                "projection: give them to hm.projection_for")
        owner = self._owner() if self._owner is not None else None
        fp = self.fingerprint
        if owner is not model:  # the same object needs no look at its weights
            fp = fp or (fingerprint(owner) if owner is not None else "")
            if fp and fingerprint(model) != fp:
                raise HeadmapsError(f"this projection was resolved for {self.model_id!r}, not "
                                    f"for these weights ({getattr(model, 'model_id', '?')!r}): "
                                    "resolve one per model with hm.projection_for")
        opts = self.options
        if stream is not None:
            opts = replace(opts, stream_dtype=check_choice(stream), stream_reason="")
        return replace(self, options=concrete(model, opts), fingerprint=fp,
                       model_id=self.model_id or str(getattr(model, "model_id", "")),
                       _owner=self._owner if owner is not None else _weak(model))

    def __str__(self) -> str:
        return self.label


#: What ``projection=`` accepts: a resolved :class:`Projection`, a preset name,
#: :class:`~headmaps.projection.ProjectionOptions`, None (the stored calibration, else
#: the default), or a function of the model that returns its Projection (for calls that
#: load the model themselves); :func:`projection_for` resolves each of them.
ProjectionLike = Projection | str | P.ProjectionOptions | Callable[[Any], Projection] | None


def projection_for(model: Any, preset: ProjectionLike = None, *,
                   calibration: bool | None = None, **overrides: Any) -> Projection:
    """Resolve a model's projection once: the one resolver of headmaps.

    Explicit options win (a preset, options or any override), else the model's stored
    calibration (unless ``calibration=False``), else
    :data:`~headmaps.projection.DEFAULT_PRESET`. Every entry point calls it on its
    ``projection=`` argument, so passing the value it returns skips the resolving.

    Args:
        model: the model (its stored calibration, its tokenizer's document-start token
            for ``prefix="auto"``, its device for the stream dtype).
        preset: a preset name or :class:`~headmaps.projection.ProjectionOptions`; or a
            :class:`Projection`, returned as it is after checking it was resolved for
            these weights (``stream_dtype`` may still be given beside it); or a function
            of ``model`` that returns one; None: the stored calibration, else the default.
        calibration: use the stored calibration when nothing explicit is given (default
            yes; False: the default preset, recorded as ``calibration disabled``).
        **overrides: :class:`~headmaps.projection.ProjectionOptions` fields
            (``fold_norms=False``, ``stream_dtype="float32"``...); ``stream_dtype`` says
            how the stream is computed and never makes a projection explicit.

    Returns:
        The value to pass as ``projection=`` (``hm.scan(m, projection=proj)``).

    Raises:
        HeadmapsError: unknown preset or option; a Projection of other weights, or one
            with options or ``calibration`` beside it.
    """
    if callable(preset):
        preset = preset(model)
    if isinstance(preset, Projection):
        return preset._bound_to(model, overrides, calibration)
    opts, name, info = _resolve(model, preset, overrides, calibration)
    known = memoised_fingerprint(model)  # memoised by a store lookup
    return Projection(opts, name, info, str(getattr(model, "model_id", "")), known, _weak(model))


def _weak(model: Any) -> Any:
    """A weak reference to ``model``, or None for an object that takes none."""
    try:
        return weakref.ref(model)
    except TypeError:
        return None


#: The keys of :func:`record`: what every result says about its projection.
RECORD_KEYS = ("preset", "options", "calibration", "label")


def record(name: str, options: dict[str, Any] | P.ProjectionOptions | None,
           calibration: dict[str, Any] | None = None) -> dict[str, Any]:
    """The one record of a projection: ``preset``, ``options``, ``calibration``, ``label``.

    ``label`` is :func:`label`'s text (how the projection is printed, with its calibration
    status); the other three are what a result keeps in its header (``preset`` holds the
    projection's name).
    """
    if isinstance(options, P.ProjectionOptions):
        options = options.to_dict()
    options, calibration = dict(options or {}), dict(calibration or {})
    return {"preset": name, "options": options, "calibration": calibration,
            "label": label(name, options, calibration)}


def record_of(result: Any) -> dict[str, Any]:
    """:func:`record` of any headmaps result (a head report: its scan's).

    Reads the result's ``preset``, ``options`` and ``calibration`` (absent ones count as
    empty); a :class:`Calibration` records the projection it chose, a :class:`Projection`
    itself.
    """
    if isinstance(result, Projection):
        return result.record()
    if isinstance(result, Calibration):
        return record(result.choice, result.options, {"status": "calibrated",
                                                      "choice": result.choice})
    if hasattr(result, "parts") and hasattr(result, "scan"):
        result = result.scan
    return record(getattr(result, "preset", ""), getattr(result, "options", None),
                  getattr(result, "calibration", None))


def label(name: str, options: dict[str, Any] | P.ProjectionOptions,
          calibration: dict[str, Any] | None = None) -> str:
    """How a projection is printed, with its calibration status: the one namer of headmaps.

    ``calibrated mlp0+fold (median r 0.79 on 64 pairs)``, ``through (after <bos>)
    (uncalibrated)``, or for an explicit projection the preset name (or a custom one's
    options).

    Args:
        name: the projection's name (a preset's, or ``custom``).
        options: its options.
        calibration: how it was chosen (a result's ``calibration`` record).
    """
    info = calibration or {}
    if isinstance(options, P.ProjectionOptions):
        options = options.to_dict()
    if info.get("status") == "calibrated":
        return str(info.get("label") or f"calibrated {info.get('choice', name)}")
    text = P._printed(name, dict(options))
    return f"{text} (uncalibrated)" if info.get("status") == "uncalibrated" else text
