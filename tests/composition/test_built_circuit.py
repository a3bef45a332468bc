"""A built induction circuit: composition finds it, path patching confirms it.

The tiny GPT-2 of ``tests/experiments/test_behaviour_built.py``: head 0.0 is a
previous-token head writing the previous token's code into a slot that the keys of
induction head 1.1 read. Here head 0.1 also writes (its own random value/output
weights, small enough to leave the circuit working), so that the built partner has a
real competitor in layer 0.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import headmaps as hm
from headmaps.cli import main
from headmaps.composition import CompositionResult
from headmaps.errors import HeadmapsError, OutOfRangeError
from headmaps.experiments import pathpatch as PP

sys.path.insert(0, str(Path(__file__).parents[1] / "experiments"))
from test_behaviour_built import DH, INDUCTION, PREV, build_gpt2  # noqa: E402

NOISE = (0, 1)


def build() -> torch.nn.Module:
    model = build_gpt2()
    g = torch.Generator().manual_seed(1)
    cols = slice(NOISE[1] * DH, (NOISE[1] + 1) * DH)
    with torch.no_grad():
        c_proj = model.transformer.h[0].attn.c_proj.weight
        c_proj[cols] = torch.randn(DH, c_proj.shape[1], generator=g, dtype=c_proj.dtype) * 0.05
    return model


@pytest.fixture(scope="module")
def built():
    return hm.load(build())


@pytest.fixture(scope="module")
def comp(built):
    return hm.composition(built, n_tokens=32)


@pytest.fixture(scope="module")
def patched(built):
    return PP.path_patching(built, [INDUCTION], n_tokens=24, n_seqs=4, kinds=("K", "Q", "V"))


def test_the_noise_head_writes(built, comp):
    """0.1 is a real competitor: it writes, and composes with 1.1 above zero."""
    W_V, W_O = built.ov(*NOISE)
    assert float((W_V @ W_O).norm()) > 0.1
    for method in ("projection", "raw"):
        assert comp.grid("K", method)[INDUCTION][NOISE] > 0


@pytest.mark.parametrize("method", ["projection", "raw"])
def test_the_previous_token_head_is_the_top_k_partner(comp, method):
    top = comp.partners(*INDUCTION, kind="K", n=3, method=method)
    assert top[0][:2] == PREV
    assert top[0][2] > 2 * top[1][2]
    assert comp.partners(0, 2) == []  # nothing earlier than layer 0


def test_path_patching_drops_the_score_through_the_built_partner_only(patched):
    assert patched.base[0] > 0.9
    assert patched.base[0] == pytest.approx(patched.eager[0], abs=1e-4)  # recomputed = model's
    k = patched.effect["K"][0]
    assert k[PREV] > 0.5 * patched.base[0]  # cutting 0.0 from 1.1's keys breaks induction
    assert abs(k[NOISE]) < 0.05 and k[PREV] > 10 * abs(k[NOISE])
    assert np.isnan(k[1]).all()  # no head of 1.1's own layer is patched
    assert abs(patched.effect["Q"][0][PREV]) < 0.05  # the queries do not read 0.0


def test_value_path_measures_the_copy_the_head_writes(built, patched):
    lh, h = INDUCTION
    ids = PP.repeated_random(built, 24, 4, 0)
    rec = PP.record(built, ids)
    own = PP.target_write(built, rec, lh, h, rec.z[lh][:, :, h])  # the head's recorded output
    assert patched.base_v[0] == pytest.approx(PP.logit_attribution(built, rec, own, 24), rel=1e-5)
    assert patched.base_v[0] > 0.5  # 1.1 copies the attended token, the induction target
    v = patched.effect["V"][0]
    assert np.isnan(v[1]).all()
    assert np.abs(v[0, 2:]).max() < 1e-6  # heads that write nothing change nothing
    # 0.0 writes into F, which 1.1's values do not read: cutting it only rescales them
    # through the layer norm (a smaller residual, larger values), so the copy grows
    assert v[PREV] < 0
    k = patched.effect["K"][0]
    assert abs(v[PREV]) / patched.base_v[0] < k[PREV] / patched.base[0]


@pytest.mark.parametrize("method", ["projection", "raw"])
def test_the_induction_circuit_finds_the_previous_token_head(built, method, tmp_path):
    """The match score puts the previous-token head first, the noise head below it, and
    equals headtypes' induction_match on the same rows (one implementation)."""
    res = hm.composition(built, kinds=("Induction", "k"), n_tokens=32)
    assert res.kinds == ("induction", "K")
    top = res.partners(*INDUCTION, kind="induction", n=3, method=method)
    assert top[0][:2] == PREV and top[0][2] > 1.0  # a z-score: well above chance
    assert res.grid("induction", method)[INDUCTION][NOISE] < top[0][2]
    assert np.isnan(res.grid("induction", method)[0]).all()  # nothing earlier than layer 0
    back = CompositionResult.load(res.save(tmp_path / method))
    assert back.kinds == res.kinds
    np.testing.assert_array_equal(back.grid("INDUCTION", method),
                                  res.grid("induction", method))  # float32 stored: a copy
    if method == "projection":
        from headmaps import projection as P
        from headmaps.composition.run import sample_tokens
        from headmaps.headtypes.static import induction_match

        src = P.Sources(built, sample_tokens(built, 32), hm.projection_for(built, None).options)
        ref = induction_match(built, src, [PREV, NOISE])
        mine = res.grid("induction")[INDUCTION]
        np.testing.assert_allclose([mine[PREV], mine[NOISE]], ref[INDUCTION],
                                   rtol=1e-5)  # the same rows through the same code


def test_partner_check_and_agreement(built, patched, comp):
    check = PP.partner_check(patched, comp, "K")
    assert check["top_cut"].tolist() == ["0.0"]
    assert check["hit_projection"].all() and check["hit_raw"].all()
    agree = PP.agreement(patched, comp, "K")
    assert agree["large"].tolist() == [1, 1]
    assert (agree["auroc"] == 1.0).all()
    drops = PP.partner_drops(patched, comp, "K", ns=(1,)).set_index("method")
    rel = patched.relative("K", 0)[:1]
    assert drops.loc["projection", "mean_drop"] == pytest.approx(float(rel[PREV]))
    assert drops.loc["random", "mean_drop"] == pytest.approx(float(np.nanmean(rel)))
    assert drops.loc["projection", "above_random"] == 1 and drops.loc["raw", "above_random"] == 1
    both = hm.composition(built, kinds=("K", "induction"), n_tokens=32)
    match = PP.partner_check(patched, both, "induction")  # read against the K path's cuts
    assert match["top_cut"].tolist() == ["0.0"] and match["hit_projection"].all()
    assert match["drop"].tolist() == check["drop"].tolist()
    frame = patched.to_frame()
    assert len(frame) == 4 and set(frame.columns) >= {"effect_K", "effect_Q", "base"}


def test_save_load_round_trip(comp, tmp_path):
    path = comp.save(tmp_path / "c")
    back = CompositionResult.load(tmp_path / "c")
    assert path.name == "composition.parquet"
    assert back.kinds == comp.kinds and back.params == comp.params
    for m in ("projection", "raw"):
        for k in comp.kinds:
            np.testing.assert_array_equal(back.grid(k, m), comp.grid(k, m))  # float32 stored
    assert back.partners(*INDUCTION) == comp.partners(*INDUCTION)
    assert "1.1" in back.summary_markdown() or "0.0->1.1" in back.summary_markdown()
    assert "<b>" in back._repr_html_()
    assert len(back.figure().axes) >= 3


def test_errors_are_headmaps_errors(built, comp):
    with pytest.raises(HeadmapsError, match="unknown composition kind"):
        hm.composition(built, kinds=("X",))
    with pytest.raises(OutOfRangeError):
        comp.partners(5, 0)
    with pytest.raises(HeadmapsError, match="not computed"):
        hm.composition(built, kinds=("Q",), n_tokens=8).grid("K")
    with pytest.raises(HeadmapsError, match="path patching"):
        PP.path_patching(built, [INDUCTION], kinds=("X",))


def test_circuits_command(tmp_path, capsys):
    d = tmp_path / "model"
    build().save_pretrained(d)
    out = tmp_path / "out"
    code = main(["circuits", str(d), "--kind", "K", "--tokens", "32", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    line = next(x for x in printed.splitlines() if x.strip().startswith("1.1 "))
    assert line.split()[1] == "0.0"  # top projection partner of the induction head
    assert "induction heads" in printed
    assert (out / "composition.parquet").is_file() and (out / "composition.json").is_file()
    assert "Best K partners" in (out / "summary.md").read_text()
    back = CompositionResult.load(out)
    assert back.partners(*INDUCTION)[0][:2] == PREV
    assert back.partners(*INDUCTION, kind="induction")[0][:2] == PREV  # the induction lines' kind
    assert printed.splitlines()[-1] == (f"wrote composition.json, composition.parquet and "
                                        f"summary.md under {out}/")
    # any case of the kind's name; without head types only what the listing needs
    assert main(["circuits", str(d), "--kind", "Induction", "--no-types", "--tokens", "32"]) == 0
    printed = capsys.readouterr().out
    assert "induction composition of" in printed and "induction heads" not in printed
    line = next(x for x in printed.splitlines() if x.strip().startswith("1.1 "))
    assert line.split()[1] == "0.0"


def test_circuits_command_errors_in_one_line(tmp_path, capsys):
    code = main(["circuits", str(tmp_path / "missing")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
