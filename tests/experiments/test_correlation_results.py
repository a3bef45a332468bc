"""Pearson against scipy, the correlation table, result round trips, causal helpers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from headmaps.experiments import CausalResult, CorrelationResult, DynamicScores, pearson
from headmaps.experiments.causal import heads_budget, overlap, ranked_heads
from headmaps.experiments.correlation import (
    correlation_table,
    set_tables,
    template_sets,
    template_table,
)
from headmaps.experiments.results import CAUSAL_COLUMNS, CORRELATION_COLUMNS, CURVE_COLUMNS
from headmaps.io import write_figure
from headmaps.scoring import ScanResult


@pytest.mark.parametrize("n", [3, 5, 40, 1000])
def test_pearson_matches_scipy(n):
    rng = np.random.default_rng(n)
    x = rng.random(n)
    y = 0.3 * x + rng.normal(size=n) * 0.2
    r, p = pearson(x, y)
    ref = stats.pearsonr(x, y)
    assert r == pytest.approx(ref.statistic, rel=1e-12, abs=1e-12)
    assert p == pytest.approx(ref.pvalue, rel=1e-8, abs=1e-300)


def test_pearson_known_values_and_degenerate():
    assert pearson([1, 2, 3, 4], [2, 4, 6, 8])[0] == pytest.approx(1.0)
    assert pearson([1, 2, 3, 4], [8, 6, 4, 2])[0] == pytest.approx(-1.0)
    # static scores repeated per template (the experiment's layout)
    x = np.tile([0.0, 0.5, 1.0], 2)
    y = np.array([0.1, 0.4, 0.9, 0.0, 0.6, 1.0])
    assert pearson(x, y)[0] == pytest.approx(stats.pearsonr(x, y).statistic)
    r, p = pearson([0, 0, 0], [1, 2, 3])
    assert math.isnan(r) and math.isnan(p)


def _fake(R=2, T=3, L=2, H=4, seed=0):
    rng = np.random.default_rng(seed)
    names = [f"rel{i}" for i in range(R)]
    static = ScanResult(model_id="tiny", model_info={}, relations=names,
                        scores=rng.random((R, L, H)).astype(np.float32),
                        suppression=rng.random((R, L, H)).astype(np.float32),
                        n_pairs=dict.fromkeys(names, 30), k=dict.fromkeys(names, 10),
                        preset="paper")
    arr = lambda: rng.random((R, T, L, H)).astype(np.float32)  # noqa: E731
    dyn = DynamicScores(names, [f"t{i} <X>" for i in range(T)], arr(), arr(), arr(), arr(),
                        dict.fromkeys(names, 30), dict.fromkeys(names, 10))
    return static, dyn


def test_correlation_table_layout():
    static, dyn = _fake()
    table = correlation_table(static, dyn)
    assert list(table.columns) == CORRELATION_COLUMNS
    x = np.tile(static.scores[1].ravel(), 3).astype(np.float64)
    ref = stats.pearsonr(x, dyn.with_context[1].ravel().astype(np.float64))
    assert table.loc[1, "corr_with_context"] == pytest.approx(ref.statistic)
    assert table.loc[1, "p_with_context"] == pytest.approx(ref.pvalue)
    xs = np.tile(static.suppression[0].ravel(), 3).astype(np.float64)
    assert table.loc[0, "supp_corr_without_context"] == pytest.approx(
        stats.pearsonr(xs, dyn.supp_without_context[0].ravel().astype(np.float64)).statistic)


def test_context_columns_are_what_they_say():
    static, dyn = _fake()
    rng = np.random.default_rng(5)
    R, T, L, H = dyn.with_context.shape
    assert correlation_table(static, dyn)[["corr_ctx_static", "corr_oracle",
                                           "split_half_ctx"]].isna().all().all()
    static.phi_ctx = rng.random((R, L, H)).astype(np.float32)
    static.supp_ctx = rng.random((R, L, H)).astype(np.float32)
    dyn.to_source = rng.random((R, T, L, H)).astype(np.float32)
    dyn.with_context_halves = np.stack([dyn.with_context, dyn.with_context])
    table = correlation_table(static, dyn)
    w = dyn.with_context[1].ravel().astype(np.float64)
    tile = lambda a: np.tile(a.ravel(), T).astype(np.float64)  # noqa: E731
    assert table.loc[1, "corr_ctx_static"] == pytest.approx(
        stats.pearsonr(tile(static.phi_ctx[1]), w).statistic)
    oracle = (static.scores[1][None] * dyn.to_source[1]).ravel().astype(np.float64)
    assert table.loc[1, "corr_oracle"] == pytest.approx(stats.pearsonr(oracle, w).statistic)
    assert table.loc[1, "ceiling_ctx"] == pytest.approx(
        stats.pearsonr(dyn.without_context[1].ravel().astype(np.float64), w).statistic)
    assert table["split_half_ctx"].to_numpy() == pytest.approx(1.0)  # identical halves
    mean = np.tile(dyn.with_context[1].reshape(T, -1).mean(0), T).astype(np.float64)
    assert table.loc[1, "ceiling_per_head"] == pytest.approx(stats.pearsonr(mean, w).statistic)
    assert (table["ceiling_per_head"] >= table["corr_with_context"] - 1e-9).all()  # phi is one
    h = dyn.with_context_halves[:, 0]
    dyn.with_context_halves[1] = h[0] + rng.normal(size=h[0].shape) * 0.3  # noisy halves
    r = stats.pearsonr(h[0].ravel(), dyn.with_context_halves[1, 0].ravel()).statistic
    assert correlation_table(static, dyn).loc[0, "split_half_ctx"] == pytest.approx(
        2 * r / (1 + r))
    one = correlation_table(static, dyn, [2])  # one template: its own r
    assert one.loc[1, "corr_with_context"] == pytest.approx(stats.pearsonr(
        static.scores[1].ravel().astype(np.float64),
        dyn.with_context[1, 2].ravel().astype(np.float64)).statistic)


def test_template_sets_name_the_paper_and_headmaps_sets_and_the_query_kind():
    import headmaps as hm

    both = hm.relations.templates("both")
    assert both[:6] == hm.relations.templates("headmaps") and len(both) == 7
    assert set(hm.relations.templates("paper")) <= set(both)
    sets = template_sets(both)
    assert [both[i] for i in sets["paper"]] == hm.relations.templates("paper")
    assert [both[i] for i in sets["source_last"]] == [t for t in both if t.endswith("<X>")]
    assert sorted(sets["source_last"] + sets["source_inside"]) == list(range(7))
    assert set(template_sets(["a <X>", "b <X>"])) == set()  # no named set, one kind only
    with pytest.raises(ValueError, match="unknown template set"):
        hm.relations.templates("mine")


def test_set_and_template_tables():
    import headmaps as hm

    static, dyn = _fake(T=7)
    dyn.templates = hm.relations.templates("both")
    sets = set_tables(static, dyn)
    assert list(sets["templates"].unique()) == ["headmaps", "paper", "source_last",
                                                "source_inside"]
    paper = template_sets(dyn.templates)["paper"]
    want = correlation_table(static, dyn, paper)
    got = sets[sets["templates"] == "paper"].drop(columns="templates").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)
    per = template_table(static, dyn)
    assert len(per) == 7 * len(dyn.relations)
    row = per[(per["relation"] == "rel0") & (per["template_index"] == 6)].iloc[0]
    assert row["sets"] == "paper" and not row["ends_with_source"]  # ... I think about
    assert per[per["template_index"] == 1]["sets"].iloc[0] == "headmaps+paper"


def test_correlation_result_round_trip(tmp_path):
    static, dyn = _fake()
    res = CorrelationResult(correlation_table(static, dyn), static, dyn, "tiny", "paper",
                            {"source": "mlp0"})
    res.save(tmp_path)
    assert list(pd.read_csv(tmp_path / "correlation.csv").columns) == CORRELATION_COLUMNS
    back = CorrelationResult.load(tmp_path)
    pd.testing.assert_frame_equal(back.per_relation, res.per_relation, check_dtype=False)
    np.testing.assert_allclose(back.dynamic.without_context, dyn.without_context, rtol=1e-6)
    np.testing.assert_allclose(back.static.scores, static.scores, rtol=1e-6)
    assert back.dynamic.templates == dyn.templates and back.preset == "paper"
    assert write_figure(res.figure(), tmp_path / "c.png").stat().st_size > 0


def test_causal_result_round_trip(tmp_path):
    table = pd.DataFrame([["rel0", 2, 0.9, 0.1, 0.85, 0.05, 1, 0.8, 0.75]], columns=CAUSAL_COLUMNS)
    curves = pd.DataFrame([["rel0", 0, 0.9, np.nan, np.nan], ["rel0", 1, 0.5, np.nan, np.nan],
                           ["rel0", 2, 0.1, 0.85, 0.05]], columns=CURVE_COLUMNS)
    res = CausalResult(table, curves, {"rel0": ["1.2", "0.3"]}, {"rel0": ["rel1"]}, "tiny", "paper")
    res.save(tmp_path)
    assert list(pd.read_csv(tmp_path / "causal.csv").columns) == CAUSAL_COLUMNS
    back = CausalResult.load(tmp_path)
    pd.testing.assert_frame_equal(back.per_relation, table, check_dtype=False)
    assert back.heads == res.heads and back.controls == res.controls
    assert write_figure(res.figure(), tmp_path / "c.png").stat().st_size > 0


def test_plots_leave_the_pyplot_backend_alone(tmp_path, pdf_backend):
    import matplotlib
    import matplotlib.pyplot as plt

    static, dyn = _fake()
    write_figure(CorrelationResult(correlation_table(static, dyn), static, dyn, "tiny").figure(),
                 tmp_path / "a.png")
    table = pd.DataFrame([["rel0", 1, 0.9, 0.1, 0.85, 0.05, 1, 0.8, 0.75]], columns=CAUSAL_COLUMNS)
    curves = pd.DataFrame([["rel0", 1, 0.5, 0.8, 0.1]], columns=CURVE_COLUMNS)
    write_figure(CausalResult(table, curves, model_id="tiny").figure(), tmp_path / "b.png")
    assert matplotlib.get_backend() == pdf_backend and plt.get_fignums() == []
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"


def test_results_repr_html():
    static, dyn = _fake()
    res = CorrelationResult(correlation_table(static, dyn), static, dyn, "<tiny>", "paper")
    page = res._repr_html_()
    assert "correlation of &lt;tiny&gt;" in page and f"without context {res.median():.2f}" in page
    assert page.count("<tr") == 1 + len(res.per_relation) and "corr_with_context" in page
    table = pd.DataFrame([["a&b", 1, 0.9, 0.1, 0.85, 0.05, 1, 0.8, 0.75]], columns=CAUSAL_COLUMNS)
    page = CausalResult(table, pd.DataFrame(columns=CURVE_COLUMNS), model_id="m")._repr_html_()
    assert "causal ablation on m" in page and "<td>a&amp;b</td>" in page and "0.850" in page


def test_causal_helpers():
    assert [heads_budget(n) for n in (144, 270, 400, 800, 1200,
                                      5000)] == [30, 30, 50, 100, 150, 250]
    scores = np.array([[0.0, 0.5, 0.2], [0.9, 0.0, 0.2]])
    assert ranked_heads(scores, 10) == [(1, 0), (0, 1), (0, 2), (1, 2)]  # zeros left out
    assert ranked_heads(scores, 2) == [(1, 0), (0, 1)]
    assert overlap([(0, 1), (1, 0)], [(1, 0)]) == 0.5 and overlap([], [(1, 0)]) == 0.0
