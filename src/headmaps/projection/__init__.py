"""How a head is projected into vocabulary space: one package, every consumer goes through it.

**How a projection is chosen.** One value, :class:`Projection`, made by one resolver,
:func:`projection_for` (``hm.projection_for``), in this order:

1. explicitly: a preset name (``projection_for(m, "norms")``), :class:`ProjectionOptions`,
   or option overrides (``projection_for(m, "paper", fold_norms=True)``; CLI ``--preset``,
   ``--source``, ``--fold-norms``, ``--biases``, ``--scale-embeddings``, ``--prefix``);
2. else the model's stored calibration (``hm.calibrate``, ``headmaps calibrate``);
3. else :data:`DEFAULT_PRESET` (``through``), also with ``calibration=False``
   (``--no-calibration``);
4. or continued from a result: ``Projection.from_record(scan)`` (a report or ``head``
   card made from a saved scan or salient operations).

``stream_dtype=`` (``--stream-dtype``) says how the stream is computed, never which
projection it is. Every entry point (scan, salient operations, the QK half, head types,
composition, analyse/report, diff, track, the experiments, description scores) takes
``projection=``: a :class:`Projection`, or anything :func:`projection_for` takes (a preset
name, options, None, or a function of the model), resolved there on entry; every result
records ``Projection.record()`` (:func:`record_of` reads it back). Salient operations under
``paper`` read layer 0 through the first MLP too (:meth:`Projection.for_salient`).

**Where the stream is computed.** The ``token_alone`` stream (``alone``, ``through``)
advances block by block in :class:`Sources` (:mod:`.stream` does the arithmetic,
:mod:`.streamcache` keeps it on disk). Over the whole vocabulary it is made once by
:func:`vocabulary_sources` (``Projection.vocabulary(model)``) and shared: ``hm.analyse``
(per model, ``hm.diff``) steps the salient operations and the QK half together over it
with :func:`headmaps.steps.run_steps`, and the head types read a subset of it; a part run
alone makes its own. Consumers read it through :class:`Vocabulary`.

For head ``h`` of layer ``l`` the mapping matrix is ``M = X · W_V^h W_O^h · U`` where the
rows of ``X`` represent source tokens. The choices below (which ``X``, which norms and
biases) are bundled as :class:`ProjectionOptions`; named presets fix them:

* ``paper``: the reference implementation of MAPS. ``X`` is ``MLP_0(LN_2^0(e))`` for
  layers > 0 and the raw embedding at layer 0; no norm gains, no biases.
* ``norms``: norm-aware. ``X`` is the residual after block 0's MLP,
  ``e + post(MLP_0(pre(e)))`` with the model's embedding scale, passed through the
  head's layer input norm; the post-attention norm gain (Gemma 2/3) and the final norm
  gain are folded into ``U``; value biases included.
* ``alone``: ``X`` is, for a head of layer ``l``, the residual stream entering block
  ``l`` when the source token is run through the model alone (a one-token sequence,
  where every head can only attend to the token itself), with norms folded as in
  ``norms``. It follows the residual through every earlier block (attention, MLP and,
  on Gemma 2/3, the sandwich norms) instead of stopping after block 0, at the cost of
  one block's arithmetic per source token and layer.
* ``through`` (the default): ``alone`` after the token that starts pretraining documents
  (:func:`document_prefix`), with biases: the source is the second token of
  ``[prefix, token]``, so it is read as a token inside text, not as an attention sink.

Modules, from the bottom: :mod:`.options` (options and presets), :mod:`.prefix` (the
prefix rule), :mod:`.stream` (the ``token_alone`` stream, pure tensor functions),
:mod:`.precision` (the stream's dtype, chosen from the hardware), :mod:`.chunking` (how
many rows it advances at a time, chosen from the CPU's cache),
:mod:`.streamcache` (its on-disk cache), :mod:`.sources` (:class:`Sources`, the only way
a consumer gets source rows), :mod:`.vocabulary` (the whole-vocabulary stream that the
parts of an analysis share, :class:`Vocabulary` over it and the bfloat16 :func:`screen`),
:mod:`.readout` (``U`` and biases as a head's output sees
them), :mod:`.calibration` (stored calibrations, :class:`Projection` and
:func:`projection_for`, the one place a run's projection is decided: explicit option >
stored calibration > :data:`DEFAULT_PRESET`, and :func:`label`, the one way it is
printed; :func:`record` bundles name, options, calibration and label, and
:func:`record_of` reads that record from any result).
"""

from .calibration import (
    RECORD_KEYS,
    Calibration,
    Projection,
    ProjectionLike,
    label,
    load_calibration,
    projection_for,
    record,
    record_of,
)
from .chunking import MIN_STREAM_CHUNK_ROWS, STREAM_CHUNK_ROWS, stream_chunk_rows
from .options import (
    AUTO_PREFIX,
    DEFAULT_PRESET,
    PRESETS,
    SOURCE_KINDS,
    ProjectionOptions,
    SourceKind,
)
from .precision import STREAM_DTYPE_CHOICES, STREAM_DTYPES
from .prefix import concrete, document_prefix, prefix_id
from .readout import layer_biases, layer_sources, output_basis
from .sources import (
    CACHE_MIN_ROWS,
    KEEP_BYTES,
    ExactRows,
    Sources,
    SourcesView,
    base_sources,
)
from .stream import (
    PROGRESS_ROWS,
    advance,
    after_prefix_weights,
    carried_position,
    embed,
    stream_dtype,
    token_alone,
    token_alone_reference,
)
from .vocabulary import (
    DEFAULT_CHUNK_ROWS,
    SCREEN_FACTOR,
    SCREEN_MIN,
    Vocabulary,
    screen,
    vocabulary_sources,
)

__all__ = [
    "AUTO_PREFIX", "CACHE_MIN_ROWS", "DEFAULT_CHUNK_ROWS", "DEFAULT_PRESET", "KEEP_BYTES",
    "SCREEN_FACTOR", "SCREEN_MIN", "Vocabulary", "screen", "vocabulary_sources",
    "MIN_STREAM_CHUNK_ROWS", "PRESETS", "PROGRESS_ROWS", "ExactRows", "SOURCE_KINDS",
    "STREAM_CHUNK_ROWS", "STREAM_DTYPES", "STREAM_DTYPE_CHOICES",
    "Calibration", "Projection", "ProjectionLike", "ProjectionOptions", "RECORD_KEYS",
    "SourceKind", "Sources",
    "SourcesView", "advance", "after_prefix_weights", "base_sources", "carried_position",
    "concrete",
    "document_prefix", "embed", "label", "layer_biases",
    "layer_sources", "load_calibration", "output_basis", "prefix_id", "stream_chunk_rows",
    "projection_for", "record", "record_of",
    "stream_dtype", "token_alone", "token_alone_reference",
]
