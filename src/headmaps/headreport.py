"""One pipeline from a model to everything the report shows: :func:`analyse` -> :class:`HeadReport`.

The scan (OV relation scores), the salient operations and descriptions of every head,
the QK half (:func:`~headmaps.attention_summary`), the head types
(:func:`~headmaps.head_types`) and, when asked, the descriptions' held-out scores
(:func:`~headmaps.score_descriptions`) are computed here, once, and kept in one result that
saves and loads itself. :func:`headmaps.report` and ``headmaps report`` render a
:class:`HeadReport`; they compute nothing themselves.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from . import projection as P
from ._html import html_card
from .attention import AttentionSummary
from .describe import (
    Describer,
    Description,
    DescriptionScores,
    describe_all,
    get_describer,
    load_descriptions,
    save_descriptions,
)
from .errors import HeadmapsError, MissingFileError
from .headtypes import HeadTypes, reusable_scan
from .io import header_for_file, reads_result, write_json
from .salient import SalientAll
from .scoring.results import ScanResult
from .steps import run_steps

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

#: The manifest of a saved :class:`HeadReport`, beside its parts in one folder.
MANIFEST = "head_report.json"
#: Part -> file name inside the folder.
PARTS = {"scan": "scores.parquet", "salient": "salient.parquet",
         "descriptions": "descriptions.jsonl", "attention": "attention.parquet",
         "types": "head_types.parquet", "description_scores": "description_scores.parquet"}


@dataclass
class HeadReport:
    """Everything known about every head of one model: the input of the report.

    Attributes:
        scan: relation scores of every head (``(R, n_layers, n_heads)``).
        salient: salient operations of every head, or None (not computed).
        descriptions: one :class:`~headmaps.describe.Description` per head, or None.
        attention: the QK half of every head, or None.
        types: the parameter-only head types, or None.
        seconds: part -> seconds it took in :func:`analyse` (parts loaded or passed in
            are absent).
        description_scores: the descriptions' measured scores on held-out tokens
            (:class:`~headmaps.describe.DescriptionScores`), or None (not computed).
    """

    scan: ScanResult
    salient: SalientAll | None = None
    descriptions: list[Description] | None = None
    attention: AttentionSummary | None = None
    types: HeadTypes | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    description_scores: DescriptionScores | None = None

    @property
    def model_id(self) -> str:
        """The model the scan was made on."""
        return self.scan.model_id

    def parts(self) -> list[str]:
        """The parts present, in :data:`PARTS` order."""
        return [p for p in PARTS if getattr(self, p) is not None]

    def __repr__(self) -> str:
        return (f"HeadReport({self.model_id!r}, {self.scan.n_layers}x{self.scan.n_heads} heads, "
                f"parts={self.parts()})")

    def to_frame(self) -> pd.DataFrame:
        """One row per head: its best relation and score, and what each other part says.

        Columns ``layer``, ``head``, ``best_relation``, ``best_score``, ``n_relations``
        (relations with score >= tau); with descriptions ``description`` and ``unclear``;
        with the QK half ``attention`` (the positional kind) and ``prev_mass``; with head
        types ``types`` (comma-separated labels); with description scores
        ``description_score`` and ``description_baseline`` (NaN where not measured; a
        head's first score).
        """
        s = self.scan
        L, H = s.n_layers, s.n_heads
        layer, head = (a.ravel() for a in np.meshgrid(np.arange(L), np.arange(H), indexing="ij"))
        cols: dict[str, Any] = {"layer": layer, "head": head}
        if s.relations:
            best = s.scores.reshape(len(s.relations), -1)
            cols["best_relation"] = np.asarray(s.relations, dtype=object)[best.argmax(0)]
            cols["best_score"] = best.max(0)
            cols["n_relations"] = (best >= s.tau).sum(0)
        else:
            cols |= {"best_relation": "", "best_score": np.nan, "n_relations": 0}
        frame = pd.DataFrame(cols)
        if self.descriptions is not None:
            by_head = {(d.layer, d.head): d for d in self.descriptions}
            frame["description"] = [by_head[k].text if k in by_head else ""
                                    for k in zip(layer.tolist(), head.tolist())]
            frame["unclear"] = [bool(by_head[k].unclear) if k in by_head else False
                                for k in zip(layer.tolist(), head.tolist())]
        if self.attention is not None:
            att = self.attention.to_frame().set_index(["layer", "head"])
            idx = pd.MultiIndex.from_arrays([layer, head])
            frame["attention"] = att["kind"].reindex(idx).fillna("").to_numpy()
            frame["prev_mass"] = att["prev_mass"].reindex(idx).to_numpy()
        if self.types is not None:
            types = self.types.to_frame().set_index(["layer", "head"])["types"]
            frame["types"] = types.reindex(pd.MultiIndex.from_arrays([layer, head])).fillna(
                "").to_numpy()
        if self.description_scores is not None:
            first: dict[tuple[int, int], Any] = {}
            for sc in self.description_scores:
                first.setdefault((sc.layer, sc.head), sc)
            keys = list(zip(layer.tolist(), head.tolist()))
            frame["description_score"] = [
                first[k].score if k in first and first[k].scored else np.nan for k in keys]
            frame["description_baseline"] = [
                first[k].baseline if k in first and first[k].scored else np.nan for k in keys]
        return frame

    def _repr_html_(self) -> str:
        """Jupyter: the parts, then the heads with the most relations (see :meth:`to_frame`)."""
        frame = self.to_frame().sort_values(["n_relations", "best_score"], ascending=False,
                                            kind="stable")
        return html_card(f"head report of {self.model_id or 'model'}: {self.scan.n_layers} x "
                         f"{self.scan.n_heads} heads", frame.head(20),
                         [f"parts: {', '.join(self.parts())}; to_frame() has every head"])

    def summary_markdown(self) -> str:
        """Markdown: the scan's summary, then types, QK half and description scores if present."""
        parts = [f"# Head report of {self.model_id}", "", f"Parts: {', '.join(self.parts())}.",
                 "", self.scan.summary_markdown()]
        for part in (self.types, self.attention):
            if part is not None:
                parts += ["", part.summary_markdown()]
        if self.descriptions is not None:
            n = sum(not d.unclear for d in self.descriptions)
            parts += ["", f"Descriptions: {n} of {len(self.descriptions)} heads described."]
        if self.description_scores is not None:
            parts += ["", self.description_scores.summary_markdown()]
        return "\n".join(parts)

    def figure(self) -> Figure:
        """The scan's heatmaps (:meth:`ScanResult.figure`), every relation in a grid."""
        return self.scan.figure()

    def save(self, path: str | os.PathLike, *, show_paths: bool = False) -> Path:
        """Write every part into the folder ``path`` and the manifest ``head_report.json`` last.

        Each file is written atomically; the manifest names the parts, so parts left
        in the folder by an earlier save are never read back.

        Args:
            path: the folder.
            show_paths: keep absolute local paths in the headers (by default file names only).

        Returns:
            The folder.
        """
        folder = Path(path)
        if folder.suffix:
            raise HeadmapsError(f"a head report is saved to a folder, not a file: {folder}")
        folder.mkdir(parents=True, exist_ok=True)
        for part in self.parts():
            value, target = getattr(self, part), folder / PARTS[part]
            if part == "descriptions":
                save_descriptions(value, target)
            else:
                value.save(target, show_paths=show_paths)
        write_json(folder / MANIFEST, header_for_file(
            {"kind": "headmaps.HeadReport", "model_id": self.model_id,
             "parts": {p: PARTS[p] for p in self.parts()}, "seconds": self.seconds}, show_paths))
        return folder

    @classmethod
    @reads_result("head report")
    def load(cls, path: str | os.PathLike) -> HeadReport:
        """Read what :meth:`save` wrote (the folder, or its ``head_report.json``)."""
        path = Path(path)
        manifest = path if path.name == MANIFEST else path / MANIFEST
        if not manifest.is_file():
            raise MissingFileError(f"no head report at {path}: {manifest.name} is missing (write "
                                   "one with `headmaps analyse MODEL --out DIR`)")
        try:
            head = json.loads(manifest.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise HeadmapsError(f"{manifest} is not valid JSON: {err}") from err
        if head.get("kind") != "headmaps.HeadReport":
            raise HeadmapsError(f"{manifest} is not a headmaps head report "
                                f"(kind={head.get('kind')!r})")
        files = head.get("parts", {})
        if "scan" not in files:
            raise HeadmapsError(f"{manifest} names no scan")
        folder = manifest.parent
        loaders = {"scan": ScanResult.load, "salient": SalientAll.load,
                   "descriptions": load_descriptions, "attention": AttentionSummary.load,
                   "types": HeadTypes.load, "description_scores": DescriptionScores.load}
        parts = {p: loaders[p](folder / files[p]) for p in PARTS if p in files}
        return cls(**parts, seconds={k: float(v) for k, v in head.get("seconds", {}).items()})


def _check(name: str, shape: tuple[int, int], scan: ScanResult) -> None:
    if shape != (scan.n_layers, scan.n_heads):
        raise HeadmapsError(f"the {name} has {shape[0]}x{shape[1]} heads but the scan "
                            f"{scan.n_layers}x{scan.n_heads}: was it made on another model?")


def analyse(
    model: Any,
    *,
    scan: ScanResult | str | os.PathLike | None = None,
    relations: Any = "all",
    projection: P.ProjectionLike = None,
    salient: bool | SalientAll = True,
    describe: str | Describer = "pattern",
    descriptions: list[Description] | None = None,
    attention: bool | AttentionSummary = True,
    head_types: bool | HeadTypes = True,
    score_descriptions: bool | DescriptionScores = False,
    llm_options: dict[str, Any] | None = None,
    progress: bool = False,
    **load_options: Any,
) -> HeadReport:
    """Compute everything the report shows about every head of ``model``.

    Each part is computed (True), skipped (False) or taken as given (a result object).
    The model is loaded only when some part needs it.

    Args:
        model: a :class:`~headmaps.HeadModel`, or anything :func:`headmaps.load` accepts.
        scan: a scan result, or a folder/file it was saved to; default: scan
            ``relations`` now.
        relations: the relations to scan when ``scan`` is None (see :func:`headmaps.scan`).
        projection: the projection of every part (a :class:`~headmaps.projection.Projection`,
            a preset name, options or None, resolved on the model by
            :func:`~headmaps.projection.projection_for`, which also takes a function of
            the loaded model that returns its Projection). With ``scan`` given, the parts
            use the scan's projection (``projection`` may then only change its stream
            dtype), so every part of the report projects alike.
        salient: salient operations of every head (15 tokens x 5 mappings).
        describe: ``"pattern"`` (offline), ``"llm"`` (an OpenAI-compatible endpoint,
            options in ``llm_options``), ``"none"``, or any
            :class:`~headmaps.describe.Describer`. Needs salient operations.
        descriptions: descriptions made earlier (skips describing).
        attention: the QK half (:func:`headmaps.attention_summary`).
        head_types: the head types (:func:`headmaps.head_types`); the scan's copying and
            successor scores are reused when it has them.
        score_descriptions: score the descriptions offline on held-out source tokens
            (:func:`headmaps.score_descriptions`, ``method="offline"``: a pattern
            description's rule predicts the targets; one more vocabulary pass), or
            scores made earlier. Descriptions without a rule are kept with the reason they
            were not scored (they need an LLM scorer: ``headmaps describe --score``).
        llm_options: keyword arguments of :class:`~headmaps.describe.LLMDescriber`.
        progress: show progress bars.
        **load_options: passed to :func:`headmaps.load` when ``model`` is a name.

    Returns:
        :class:`HeadReport`.

    Raises:
        HeadmapsError: bad arguments, or a given part was made on another model.
    """
    describer = None if descriptions is not None else get_describer(describe, llm_options)
    if describer is not None and salient is False:
        raise HeadmapsError("descriptions need salient operations: pass salient=True (or a "
                            "SalientAll), or describe='none'")
    if isinstance(scan, (str, os.PathLike)):
        scan = ScanResult.load(scan)
    if score_descriptions is True and (salient is False or (describer is None
                                                             and descriptions is None)):
        raise HeadmapsError("description scores need descriptions and salient operations: "
                            "pass salient=True and a describer, or score_descriptions=False")
    need_model = scan is None or any(x is True for x in (salient, attention, head_types,
                                                         score_descriptions))
    m = _model(model, load_options) if need_model else None
    seconds: dict[str, float] = {}

    def timed(part: str, fn, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        seconds[part] = round(time.perf_counter() - t0, 3)
        log.info("%s of %s: %.1f s", part, m.model_id if m is not None else "", seconds[part])
        return out

    proj = None
    if scan is None:
        from .scoring import scan as run_scan

        proj = _projection(m, projection, None)
        scan = timed("scan", run_scan, m, relations, projection=proj, progress=progress)
    elif m is not None:
        _check("model", (m.n_layers, m.n_heads), scan)
        proj = _projection(m, projection, scan)
    shared = proj.vocabulary(m) if m is not None and (salient is True or attention is True) \
        else None
    types_view = None
    if shared is not None and head_types is True:
        from .headtypes.static import DEFAULT_N_TOKENS, token_subset

        types_view = shared.subset(token_subset(m, DEFAULT_N_TOKENS))
    steps: dict[str, Any] = {}
    if salient is True:
        from .salient.compute import salient_steps

        steps["salient"] = salient_steps(m, sources=shared, projection=proj)
    if attention is True:
        from .attention.compute import summary_steps

        steps["attention"] = summary_steps(m, sources=shared, projection=proj)
    done = run_steps(steps, m.n_layers if m is not None else 0, progress, seconds)
    salient = done.get("salient", salient)
    attention = done.get("attention", attention)
    sal = salient or None
    if sal is not None and (sal.n_heads != scan.n_heads or max(sal.layers) >= scan.n_layers):
        raise HeadmapsError(f"the salient operations ({len(sal.layers)} layers x {sal.n_heads} "
                            f"heads) do not fit the scan ({scan.n_layers}x{scan.n_heads})")
    if describer is not None and sal is not None:
        descriptions = timed("descriptions", describe_all, sal, describer, progress=progress)
    if head_types is True:
        from .headtypes import head_types as run_types

        reuse = reusable_scan(scan)
        # one previous-token number in the report: the QK summary's sampled profile
        prof = (attention.sampled if attention and list(attention.layers) ==
                list(range(m.n_layers)) else None)
        head_types = timed("types", run_types, m, scan=reuse, sources=types_view, profile=prof,
                           projection=proj)
    types = head_types or None
    if types is not None:
        _check("head types", (types.n_layers, types.n_heads), scan)
    scores = score_descriptions or None
    if score_descriptions is True:
        from .describe import PatternDescriber
        from .describe import score_descriptions as run_scores

        pattern = describer if isinstance(describer, PatternDescriber) else None
        scores = timed("description_scores", run_scores, m, descriptions, sal, method="offline",
                       describer=pattern, progress=progress)
    return HeadReport(scan, sal, descriptions, attention or None, types, seconds, scores)


def _projection(model: Any, given: P.ProjectionLike, scan: ScanResult | None) -> P.Projection:
    """The one projection of every part: ``given`` resolved on ``model``, else the scan's.

    Raises:
        HeadmapsError: ``given`` is not the projection ``scan`` was made with.
    """
    if scan is None or not scan.options:
        return P.projection_for(model, given)
    made = P.Projection.from_record(scan)
    if given is None:
        return P.projection_for(model, made)
    proj = P.projection_for(model, given)
    if proj.options != made.options:
        raise HeadmapsError(f"the scan was made with the projection {made.label}, not "
                            f"{proj.label}: every part of a report uses the scan's")
    return proj


def _model(model: Any, load_options: dict[str, Any]) -> Any:
    from .models import HeadModel, load

    if model is None:
        raise HeadmapsError("scanning, salient operations, attention and head types need the "
                            "model: pass it, or turn those parts off")
    return model if isinstance(model, HeadModel) else load(model, **load_options)
