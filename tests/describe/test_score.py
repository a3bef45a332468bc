"""score_descriptions: held-out tokens, offline rule scores and baselines, simulation mechanics.

The offline tests use heads whose OV circuit is written by hand (a copying head, a fixed
permutation, word to first letter, country to capital plus verb to past tense), so what
each head does is known exactly. The simulation test talks to a real llama.cpp server
serving SmolLM2-135M-Instruct and checks the mechanics, not the answers' quality.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

import headmaps as hm
from headmaps.describe import Description, LLMDescriber, PatternDescriber, describe_all
from headmaps.describe.llm import AnswerError
from headmaps.describe.prompts import parse_targets, simulation_messages
from headmaps.describe.results import DescriptionScores, auroc
from headmaps.describe.sampling import derangement, held_out_ids
from headmaps.describe.scoring import hit
from headmaps.errors import CorruptFileError, HeadmapsError
from headmaps.io import write_figure
from tiny_vocab import COUNTRY_CAPITAL, OTHER, VERB_PAST, mapping_matrix, set_mapping, vocab_model

COUNTRIES = [c for c, _ in COUNTRY_CAPITAL]
WORDS = COUNTRIES + [v for v, _ in VERB_PAST] + OTHER
PERM = list(zip(WORDS, WORDS[7:] + WORDS[:7]))
HEADS = {(0, 0): [(w, w) for w in WORDS],  # copying
         (0, 1): PERM,  # a fixed permutation (a user relation names it)
         (1, 0): [(w, w[0].lower()) for w in WORDS],  # first letter
         (1, 1): COUNTRY_CAPITAL + VERB_PAST}  # capitals (verbs: outside the relation)
RELATIONS = {"perm": ("algorithmic", PERM), "country_to_capital": ("knowledge", COUNTRY_CAPITAL)}
N_SHOWN = 10


@pytest.fixture(scope="module")
def built():
    model, tok = vocab_model(n_layers=2)
    for (layer, head), pairs in HEADS.items():
        set_mapping(model, layer, head, mapping_matrix(tok, pairs))
    return hm.load(model, tokenizer=tok)


@pytest.fixture(scope="module")
def describer():
    return PatternDescriber(RELATIONS)


@pytest.fixture(scope="module")
def salient(built):
    return hm.salient_all(built, n_tokens=N_SHOWN, n_mappings=5, projection="paper")


@pytest.fixture(scope="module")
def descriptions(salient, describer):
    return describe_all(salient, describer)


@pytest.fixture(scope="module")
def scores(built, descriptions, salient, describer):
    return hm.score_descriptions(built, descriptions, salient, describer=describer)


def test_pattern_descriptions_name_their_rule(descriptions):
    rules = {(d.layer, d.head): d.rule for d in descriptions}
    assert rules == {(0, 0): "rule:copy", (0, 1): "relation:perm", (1, 0): "rule:first_letter",
                     (1, 1): "relation:country_to_capital"}
    d = descriptions[0]
    assert Description.from_dict(d.to_dict()) == d
    old = {k: v for k, v in d.to_dict().items() if k != "rule"}  # a file from before rules
    assert Description.from_dict(old).rule is None


def test_right_descriptions_score_high_offline(scores):
    assert len(scores) == 4 and len(scores.scored) == 4
    for s in scores:
        assert s.method == "offline" and s.k == 5
        assert s.score >= 0.8, s
        assert s.baseline < 0.2, s
        assert s.score - s.baseline >= 0.6
    assert scores.auroc() == 1.0


def test_offline_arithmetic(scores):
    for s in scores:
        used = [h for h in s.hits if h >= 0]
        assert s.n == len(used) and s.n_excluded == len(s.hits) - len(used)
        assert s.score == pytest.approx(np.mean(used))
        # the baseline pools the three other heads' held-out tokens the rule applies to
        assert 0 < s.baseline_n <= 3 * (10 + 10)
    capital = scores[1, 1]
    # verbs are held-out sources of that head, but the capital rule does not apply to them
    assert capital.n_excluded > 0 and capital.n + capital.n_excluded == len(capital.tokens)
    excluded = {t for t, h in zip(capital.tokens, capital.hits) if h < 0}
    assert excluded and not excluded & set(COUNTRIES)


def test_held_out_tokens_never_shown_and_use_the_same_projection(built, scores, salient):
    deeper = hm.salient_all(built, n_tokens=N_SHOWN + 10, n_mappings=5, projection="paper")
    for s in scores:
        shown = set(salient[s.layer, s.head].token_ids.tolist())
        assert len(s.token_ids) == 20 and len(set(s.token_ids)) == 20
        assert not shown & set(s.token_ids)
        # the first n_salient held-out tokens are ranks 10..19 by saliency, with the same
        # top-k targets the salient operations give them
        ops = deeper[s.layer, s.head]
        assert s.token_ids[:10] == ops.token_ids[N_SHOWN:].tolist()
        assert s.targets[:10] == ops.targets[N_SHOWN:]


def test_held_out_seeded_and_drawn_by_saliency(built, descriptions, salient, describer):
    a = hm.score_descriptions(built, descriptions, salient, describer=describer, seed=3)
    b = hm.score_descriptions(built, descriptions, salient, describer=describer, seed=3)
    c = hm.score_descriptions(built, descriptions, salient, describer=describer, seed=4)
    assert [s.token_ids for s in a] == [s.token_ids for s in b]
    assert [s.token_ids[10:] for s in a] != [s.token_ids[10:] for s in c]
    assert [s.token_ids[:10] for s in a] == [s.token_ids[:10] for s in c]


def test_held_out_ids_unit():
    rng = np.random.default_rng(0)
    sal = np.r_[np.linspace(10, 1, 20), np.zeros(10), [-np.inf] * 5]
    shown = [0, 1, 2, 25]  # a shown token need not be among the most salient
    out = held_out_ids(sal, shown, n_shown=3, n_salient=4, n_random=6, rng=rng)
    assert out[:4].tolist() == [3, 4, 5, 6]
    assert not set(out.tolist()) & {0, 1, 2, 25}
    assert not set(out.tolist()) & set(range(30, 35))  # filtered-out sources never drawn
    assert len(out) == 10
    # weights: a token with almost all the saliency is always drawn
    sal = np.r_[np.ones(50), [1e6]]
    for seed in range(5):
        got = held_out_ids(sal, [], 0, 0, 2, np.random.default_rng(seed))
        assert 50 in got.tolist()
    # too few positive weights: the rest is drawn uniformly from zero-saliency tokens
    got = held_out_ids(np.r_[[5.0, 4.0], np.zeros(6)], [0], 1, 0, 4, np.random.default_rng(1))
    assert len(got) == 4 and 1 in got.tolist() and 0 not in got.tolist()


def test_wrong_rule_scores_at_or_below_baseline(built, descriptions, salient, describer):
    by = {(d.layer, d.head): d for d in descriptions}
    wrong = [dataclasses.replace(by[1, 0], rule="rule:copy", text="Copying"),  # letters
             dataclasses.replace(by[0, 0], rule="rule:first_letter", text="First letter"),
             dataclasses.replace(by[0, 1], rule="relation:country_to_capital", text="Capitals")]
    res = hm.score_descriptions(built, [*wrong, by[1, 1]], salient, describer=describer)
    for s in res.scores[:3]:
        assert s.scored and s.score <= s.baseline + 0.05, s
        assert s.score <= 0.1
    # the baseline pools every other head of the layers, the copying head included
    assert res.scores[0].baseline >= 0.2


def test_a_rule_that_fits_every_head_scores_at_baseline(built, salient):
    everything = {"any_mapping": ("algorithmic", [p for ps in HEADS.values() for p in ps])}
    d = PatternDescriber(everything)
    descs = [Description(layer, head, "Some mapping", "relation", "any_mapping",
                         rule="relation:any_mapping") for layer, head in HEADS]
    res = hm.score_descriptions(built, descs, salient, describer=d)
    for s in res:
        assert s.score >= 0.8 and abs(s.score - s.baseline) <= 0.2, s


def test_unscorable_descriptions(built, salient, describer):
    descs = [Description(0, 0, "Unclear", "unclear", unclear=True),
             Description(0, 1, "Maps words to other words", "llm", describer="llm:x"),
             Description(1, 0, "Inputs are years", "input_category", "years"),
             Description(1, 1, "x", "relation", rule="relation:not_in_library")]
    res = hm.score_descriptions(built, descs, salient, describer=describer)
    assert [s.method for s in res] == ["none"] * 4
    assert res[0, 0].reason == "unclear"
    assert "scorer" in res[0, 1].reason and "names no mapping" in res[1, 0].reason
    assert "unknown" in res[1, 1].reason
    assert all(not s.scored for s in res) and math.isnan(res.auroc())
    off = hm.score_descriptions(built, descs, salient, describer=describer, method="offline")
    assert "needs an LLM" in off[0, 1].reason


def test_bad_arguments(built, descriptions, salient):
    with pytest.raises(HeadmapsError, match="needs a scorer"):
        hm.score_descriptions(built, descriptions, salient, method="simulation")
    with pytest.raises(HeadmapsError, match="unknown scoring method"):
        hm.score_descriptions(built, descriptions, salient, method="vibes")
    with pytest.raises(HeadmapsError, match="held-out sample is empty"):
        hm.score_descriptions(built, descriptions, salient, n_salient=0, n_random=0)
    with pytest.raises(HeadmapsError, match="no descriptions"):
        hm.score_descriptions(built, [], salient)
    with pytest.raises(HeadmapsError, match="do not cover"):
        hm.score_descriptions(built, [Description(1, 5, "x", "llm")], salient)


def test_without_salient_the_shown_tokens_are_the_top_ones(built, descriptions, describer,
                                                            scores):
    res = hm.score_descriptions(built, descriptions, describer=describer, n_shown=N_SHOWN,
                                projection="paper")
    assert [s.token_ids for s in res] == [s.token_ids for s in scores]
    assert [s.score for s in res] == [s.score for s in scores]


def test_results_protocol(scores, tmp_path):
    f = scores.to_frame()
    assert list(f[["layer", "head"]].itertuples(index=False, name=None)) == list(HEADS)
    assert {"score", "baseline", "n", "k", "method", "description"} <= set(f.columns)
    for path in (tmp_path / "out", tmp_path / "s.csv"):
        scores.save(path)
        back = DescriptionScores.load(path)
        same = [json.dumps(dataclasses.asdict(s)) for s in back]  # NaN-safe comparison
        assert same == [json.dumps(dataclasses.asdict(s)) for s in scores]
        assert back.header()["auroc"] == 1.0 and back.n_shown == N_SHOWN
    assert (tmp_path / "out" / "description_scores.parquet").is_file()
    (tmp_path / "bad.csv").write_text("layer,head\n0,0\n")
    (tmp_path / "bad.json").write_text(json.dumps({"kind": "headmaps.DescriptionScores"}))
    with pytest.raises(CorruptFileError, match="bad.csv"):
        DescriptionScores.load(tmp_path / "bad.csv")
    html = scores._repr_html_()
    assert "AUROC" in html and "Copying" in html
    md = scores.summary_markdown()
    assert "| 1.0 | offline | 1.00 |" in md and "AUROC 1.000" in md
    layer = scores.per_layer()
    assert layer["n_heads"].tolist() == [2, 2] and layer["coverage"].tolist() == [1.0, 1.0]
    assert layer["accurate"].tolist() == pytest.approx(layer["mean_score"].tolist())
    fig = scores.figure()
    assert fig.axes[0].get_xlabel() == "layer"
    png = write_figure(scores.figure(), tmp_path / "acc.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_parse_targets():
    assert parse_targets('{"targets": ["Paris", " Lyon"]}') == ["Paris", "Lyon"]
    assert parse_targets('Sure:\n```json\n["a", "b"]\n```') == ["a", "b"]
    assert parse_targets('{"outputs": [1991, "x"]}') == ["1991", "x"]
    assert parse_targets('["", "a"]') == ["a"]
    for bad in ("", "no json here", '{"targets": "Paris"}', '[["a"]]', '{"t": [true]}'):
        with pytest.raises(AnswerError):
            parse_targets(bad)


def test_hit_and_auroc_arithmetic():
    assert hit([" paris"], ["Paris", "Lyon"]) and not hit(["Rome"], ["Paris"])
    assert not hit([], ["Paris"])
    assert auroc([1, 1], [0, 0]) == 1.0 and auroc([0], [1]) == 0.0
    assert auroc([0.5, 1.0], [0.5]) == 0.75
    assert math.isnan(auroc([], [1.0]))
    p = derangement(7, np.random.default_rng(0))
    assert sorted(p.tolist()) == list(range(7)) and not np.any(p == np.arange(7))


def test_simulation_prompt():
    msgs = simulation_messages("Country to its capital", " France", 5)
    user = msgs[-1]["content"]
    assert "Country to its capital" in user and '"France"' in user and "up to 5" in user


# ---- a real llama.cpp server (slow) ----------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from test_llm_server import start_server, stop_server

    proc, url = start_server(tmp_path_factory.mktemp("llama-score") / "server.log")
    yield url
    stop_server(proc)


@pytest.mark.slow
def test_simulation_with_a_real_server(built, salient, server, tmp_path):
    descs = [Description(0, 0, "Copies the input word", "llm", describer="llm:x"),
             Description(1, 0, "Maps a word to its first letter", "llm", describer="llm:x"),
             Description(1, 1, "Unclear", "unclear", unclear=True)]
    scorer = LLMDescriber("smollm2", server, json_mode=True, timeout=120, max_retries=1,
                          backoff=0.1, max_tokens=48, cache_dir=tmp_path)
    res = hm.score_descriptions(built, descs, salient, scorer=scorer, n_salient=2, n_random=1,
                                workers=2)
    assert res.scorer == "llm:smollm2" and res[1, 1].method == "none"
    sims = [res[0, 0], res[1, 0]]
    for s in sims:
        assert s.method == "simulation" and len(s.tokens) == 3 and len(s.predictions) == 3
        assert not set(s.token_ids) & set(salient[s.layer, s.head].token_ids.tolist())
        # the arithmetic: a hit is a proposal among the head's real top-k
        for pred, tgts, h in zip(s.predictions, s.targets, s.hits):
            assert h == -1 or h == int(hit(pred, tgts))
            assert len(pred) <= 5
        used = [h for h in s.hits if h >= 0]
        assert s.n == len(used) and (s.n == 0 or s.score == pytest.approx(np.mean(used)))
        assert s.baseline_n + s.n_excluded <= 3 + 3
        assert 6 <= s.llm_calls <= 12  # 3 tokens + 3 of the other head, a repair at most each
    # answers asked for = HTTP requests + cache hits (a token held out for both heads gives
    # the same prompt twice in the baseline)
    assert res.llm_calls == scorer.requests and res.cache_hits == scorer.cache_hits
    assert sum(s.llm_calls for s in sims) == res.llm_calls + res.cache_hits
    # every prompt holds one description and one held-out token (its own or the other head's)
    prompts = [json.loads(f.read_text())["messages"][1]["content"]
               for f in tmp_path.rglob("*.json")]
    assert 6 <= len(prompts) <= scorer.requests
    for s, other in ((sims[0], sims[1]), (sims[1], sims[0])):
        mine = [p for p in prompts if s.text in p]
        assert len(mine) >= 3
        told = {p.split('Input: "', 1)[1].split('"', 1)[0] for p in mine}
        assert told == {t.strip() for t in s.tokens + other.tokens}
    again = LLMDescriber("smollm2", server, json_mode=True, max_tokens=48, cache_dir=tmp_path)
    res2 = hm.score_descriptions(built, descs, salient, scorer=again, n_salient=2, n_random=1)
    assert again.requests == 0 and again.cache_hits == res.llm_calls + res.cache_hits
    assert [s.hits for s in res2] == [s.hits for s in res]


# ---- explain, score, keep -------------------------------------------------------------
def test_pattern_candidates(salient, describer):
    ops = salient[1, 1]  # capitals and past tenses: two patterns
    cands = describer.candidates(ops, 3)
    assert len(cands) >= 2 and cands[0] == describer.describe(ops)
    rules = [c.rule for c in cands]
    assert rules[0] == "relation:country_to_capital" and "rule:add:-ed" in rules
    assert len(set(rules)) == len(rules)
    assert len(describer.candidates(salient[0, 0], 1)) == 1


def test_refine_keeps_the_best_and_remeasures_on_a_fresh_sample(built, salient, describer):
    kept, final = hm.describe.refine_descriptions(built, salient, describer, 3, n_salient=4,
                                                  n_random=4)
    assert [(d.layer, d.head) for d in kept] == list(HEADS)
    cands = [describer.candidates(ops, 3) for ops in salient]
    first = hm.score_descriptions(built, [c for cs in cands for c in cs], salient,
                                  describer=describer, n_salient=4, n_random=4)
    i = 0
    for cs, d, s in zip(cands, kept, final):
        got = first.scores[i:i + len(cs)]
        i += len(cs)
        gains = [g.score - (0 if math.isnan(g.baseline) else g.baseline) if g.scored
                 else -math.inf for g in got]
        best = int(np.argmax(gains))  # the best gain over the baseline, first on ties
        assert d.rule == cs[best].rule
        assert s.candidates == len(cs)
        assert s.selection_score == got[best].score or not got[best].scored
        # the fresh sample shares no token with the shown ones or the selection sample
        used = set(got[0].token_ids) | set(salient[s.layer, s.head].token_ids.tolist())
        assert len(s.token_ids) == 8 and not used & set(s.token_ids)
    assert final[1, 1].candidates >= 2
    with pytest.raises(HeadmapsError, match="at least 1"):
        hm.describe.refine_descriptions(built, salient, describer, 0)


@pytest.mark.slow
def test_llm_candidates_are_sampled_with_their_own_seed(server, tmp_path):
    from test_llm_server import country_ops

    d = LLMDescriber("smollm2", server, json_mode=True, timeout=120, max_retries=1,
                     backoff=0.1, max_tokens=120, cache_dir=tmp_path)
    cands = d.candidates(country_ops(), 3)
    assert 1 <= len(cands) <= 3 and len({c.text for c in cands}) == len(cands)
    params = [json.loads(f.read_text())["params"] for f in tmp_path.rglob("*.json")]
    seeds = {p.get("seed") for p in params}
    assert {None, 1, 2} <= seeds  # describe's answer, then two sampled ones
    assert all(p["temperature"] >= 0.8 for p in params if p.get("seed"))
