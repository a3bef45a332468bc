"""hm.track with a Dask LocalCluster (2 worker processes, 1 thread each) agrees with the
sequential run; scores from the two paths are compared with a tolerance of 1e-6."""

from __future__ import annotations

import distributed
import numpy as np
from series import write_series

import headmaps as hm


def test_dask_matches_sequential(tmp_path):
    paths, pairs = write_series(tmp_path)
    kw = dict(relations={"copying": pairs}, projection="paper", min_pairs=5, types=False)
    seq = hm.track(paths, workers=1, **kw)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        res = hm.track(paths, client=client, **kw)
    assert res.execution["mode"] == "dask" and res.execution["workers"] == 2
    assert not res.failed
    np.testing.assert_allclose(res.scores, seq.scores, atol=1e-6)
    assert res.first_crossing(relation="copying").equals(seq.first_crossing(relation="copying"))
