"""Follow every head over a series of checkpoints: :func:`track` -> :class:`TrackResult`.

Example::

    import headmaps as hm
    res = hm.track(["run/checkpoint-0", "run/checkpoint-500", "run/checkpoint-1000"])
    res.trajectory(1, 3, type="induction")   # one head's score at every checkpoint
    res.first_crossing(type="induction")     # the step each head first passes its rule
    res.onset(1, 3, type="induction")        # the step its score leaves its start for good
    res.summary_markdown(); res.figure(type="induction"); res.save("track/")

With a Dask client (``pip install 'headmaps[dask]'``) each checkpoint is a Dask task::

    from dask.distributed import Client
    res = hm.track(paths, client=Client("tcp://scheduler:8786"))

Projection: ``projection=`` is resolved on the first checkpoint by
:func:`headmaps.projection_for` (it may be a function of that checkpoint) and its options
read every checkpoint, each job scoring its own (only the relations' source tokens are
streamed, and the head types' sample).
"""

from .compute import checkpoint_steps, plan_series, track
from .plan import SeriesMismatchError, SeriesPlan, fingerprint
from .results import ONSET_FRACTION, TrackResult, onset_index
from .workers import CRASH_ONCE_FILE, run_series, score_checkpoint

__all__ = ["CRASH_ONCE_FILE", "ONSET_FRACTION", "SeriesMismatchError", "SeriesPlan",
           "TrackResult", "checkpoint_steps", "fingerprint", "onset_index", "plan_series",
           "run_series", "score_checkpoint", "track"]
