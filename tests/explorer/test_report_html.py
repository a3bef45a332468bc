"""The HTML builder: structure, data encoding, escaping, size; the summaries and schema."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from headmaps.describe import Description
from headmaps.errors import HeadmapsError
from headmaps.explorer import (
    build_report,
    load_extras,
    normalise_extras,
    synthetic_scan,
    write_report,
)
from headmaps.explorer.build import asset, fill_page
from headmaps.explorer.encode import FAMILY_COLOURS, Q, best_relation, encode, families, quantise
from headmaps.explorer.summary import coverage_per_layer, gqa_agreement, multi_relation_heads
from headmaps.scoring import ScanResult
from headmaps.scoring.analysis import kv_group_size

VOID = {"meta", "link", "br", "hr", "img", "input", "col", "source", "wbr", "area", "base", "embed",
        "track"}


class _Checker(HTMLParser):
    """Checks that non-void elements nest and close properly; collects ids."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.ids: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.append(a["id"])
        for key in ("src", "href"):
            if a.get(key, "").startswith(("http:", "https:", "//")):
                self.external.append(a[key])
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> (open: {self.stack[-3:]})")
            return
        self.stack.pop()


def payload(page: str) -> dict:
    """The page's data, with the per-head extras (one JSON per line) decoded as ``ex``."""
    m = re.search(r'<script type="application/json" id="hm-data">(.*?)</script>', page, re.S)
    assert m, "no data element"
    d = json.loads(m.group(1))
    lines = re.search(r'<script type="text/plain" id="hm-ex">(.*?)</script>', page,
                      re.S).group(1).split("\n")
    assert len(lines) == d["nL"] * d["nH"]
    d["ex"] = [json.loads(x) if x else None for x in lines]
    return d


def decode(b64: str, shape) -> np.ndarray:
    return np.frombuffer(base64.b64decode(b64), dtype="<u2").reshape(shape)


@pytest.fixture(scope="module")
def small():
    return synthetic_scan(6, 8, 5, seed=3)


def test_page_is_well_formed_and_self_contained(small):
    scan, extras = small
    page = build_report(scan, extras)
    assert page.startswith("<!DOCTYPE html>")
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert not checker.errors, checker.errors
    assert not checker.stack, f"unclosed: {checker.stack}"
    assert not checker.external
    assert len(checker.ids) == len(set(checker.ids)), "duplicate ids"
    for needed in ("hm-grid", "hm-rel", "hm-table", "hm-panel", "hm-filter", "hm-summary",
                   "hm-card"):
        assert needed in checker.ids
    assert "{{" not in page.replace("{{TITLE}}", "")  # every placeholder filled
    assert "default-src 'none'" in page  # the CSP forbids any request
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)


@pytest.mark.parametrize("template", ["report.html", "diff.html", "timeline.html"])
def test_every_page_opens_with_the_shared_head_and_fills_once(template):
    # the offline content security policy lives in one asset (head.html) for every page
    values = {"TITLE": "t {{CSS}}", "CSS": "c {{DATA}}", "DATA": "d", "JS": "j", "CARD": "k"}
    page = fill_page(template, values)
    head = asset("head.html").replace("{{TITLE}}", "t {{CSS}}")
    assert page.startswith(head) and "Content-Security-Policy" in head
    assert "{{HEAD}}" not in page and page.count("Content-Security-Policy") == 1
    assert "c {{DATA}}" in page  # inserted text is not searched for placeholders
    assert ("{{SIDES}}" in page) == (template == "diff.html")  # a name not given stays


def test_data_round_trip(small):
    scan, extras = small
    d = payload(build_report(scan, extras))
    shape = scan.scores.shape
    s, p = decode(d["scores"], shape), decode(d["supp"], shape)
    assert np.abs(s / Q - scan.scores).max() <= 1.0001 / Q
    assert np.abs(p / Q - scan.suppression).max() <= 1.0001 / Q
    assert ((s >= d["tauQ"]) == (scan.scores >= scan.tau)).all()
    assert d["relations"] == scan.relations and (d["nL"], d["nH"]) == shape[1:]
    e = d["ex"][2 * scan.n_heads + 5]
    first = extras["2.5"]["salient"][0]
    assert d["toks"][e["s"][0][0]] == first["token"]
    assert d["toks"][e["s"][0][2][0]] == first["targets"][0][0]
    assert e["s"][0][2][1] == pytest.approx(first["targets"][0][1], rel=5e-3)


def test_overview_payload_best_relation_and_families():
    """The overview's data: each head's best relation and the family of every relation."""
    scores = np.zeros((3, 2, 2))
    scores[0, 0, 0], scores[1, 0, 0] = 0.3, 0.9  # best: antonym (linguistic)
    scores[2, 0, 1] = 0.5  # best: a user relation (custom)
    scores[0, 1, 0] = 0.05  # best: country_to_capital, below tau (the page shows it neutral)
    scores[:, 1, 1] = np.nan  # NaN counts as 0: ties go to the first relation
    supp = np.zeros_like(scores)
    supp[2, 1, 0] = 0.4
    rels = ["country_to_capital", "antonym", "my_pairs"]
    scan = dataclasses.replace(_scan(scores, rels), suppression=supp)
    d = payload(build_report(scan))
    assert d["best"] == [1, 2, 0, 0]  # layer * n_heads + head order
    assert d["bestSupp"] == [0, 0, 2, 0]
    assert d["families"] == ["knowledge", "linguistic", "custom"]
    assert [d["families"][f] for f in d["fam"]] == ["knowledge", "linguistic", "custom"]
    assert d["famColours"] == [FAMILY_COLOURS[f] for f in d["families"]]
    assert len(set(FAMILY_COLOURS.values())) == len(FAMILY_COLOURS)
    # Every built-in relation has its category's family, in the categories' order.
    names, index = families(["successor", "english_to_french", "copying", "object_to_superclass"])
    assert names == ["algorithmic", "knowledge", "translation"]
    assert [names[i] for i in index] == ["algorithmic", "translation", "algorithmic", "knowledge"]
    assert best_relation(np.zeros((0, 2, 3))).tolist() == [-1] * 6
    synthetic = payload(build_report(synthetic_scan(4, 4, 20, seed=0, with_extras=False)[0]))
    assert synthetic["families"] == ["algorithmic", "knowledge", "linguistic", "translation"]


def test_quantise_is_exact_at_tau():
    rng = np.random.default_rng(0)
    tau = 0.15
    a = np.concatenate([rng.random(1000),
                        [tau, np.nextafter(tau, 0), np.nextafter(tau, 1), 0.0, 1.0]])
    q, tq = quantise(a, tau)
    assert ((q >= tq) == (a >= tau)).all()
    assert np.abs(q / Q - a).max() <= 1.0001 / Q


def test_escaping_of_hostile_strings(small):
    scan, _ = small
    evil = "</script><script>alert(1)</script><!--"
    extras = {"0.0": {"salient": [{"token": evil, "saliency": 1.0, "targets": [["<b>&amp;", 2.0]]}],
                      "description": "<img src=x onerror=alert(1)>", "evidence": [evil]}}
    scan2 = dataclasses.replace(scan, model_id="m<script>x</script>")
    page = build_report(scan2, extras, title="t</title><script>")
    assert "<script>alert(1)" not in page
    assert "<img src=x" not in page
    assert page.count("</script>") == 3  # the data, the extras and the code
    d = payload(page)
    assert evil in d["toks"] and d["ex"][0]["d"] == "<img src=x onerror=alert(1)>"


def test_big_report_size_bound():
    scan, extras = synthetic_scan(80, 64, 20, seed=0)
    assert len(extras) == 80 * 64
    page = build_report(scan, extras)
    size = len(page.encode("utf-8"))
    assert size < 25e6, f"{size / 1e6:.1f} MB"


def test_write_report_and_no_extras(tmp_path):
    scan, _ = synthetic_scan(4, 4, 3, seed=1, with_extras=False)
    path = write_report(tmp_path / "sub" / "r.html", scan)
    text = path.read_text(encoding="utf-8")
    d = payload(text)
    assert d["ex"] == [None] * 16 and d["summary"]["coverage"] is None
    assert not list(path.parent.glob(".*.tmp"))


def test_model_card(small):
    scan, extras = small
    page = build_report(scan, extras)
    for text in ("Model card", scan.model_id, "KV heads", "Vocabulary", "128,256", "paper",
                 "Generated",
                 "english_to_german"):
        assert text in page


def test_normalise_extras_errors():
    with pytest.raises(HeadmapsError, match="LAYER.HEAD"):
        normalise_extras({"x": {}}, 2, 2)
    with pytest.raises(HeadmapsError, match="outside"):
        normalise_extras({"5.0": {}}, 2, 2)
    with pytest.raises(HeadmapsError, match="token, score"):
        normalise_extras({"0.0": {"salient": [{"token": "a", "targets": [["b"]]}]}}, 2, 2)
    with pytest.raises(HeadmapsError, match="not a number"):
        normalise_extras({"0.0": {"confidence": "high"}}, 2, 2)
    out = normalise_extras({"1.1": {"description": "d", "evidence": "one", "junk": 1}}, 2, 2)
    assert out == {(1, 1): {"description": "d", "evidence": ["one"]}}


def _scan(scores: np.ndarray, relations: list[str], n_kv_heads: int | None = None) -> ScanResult:
    info = {} if n_kv_heads is None else {"n_kv_heads": n_kv_heads}
    return ScanResult("m", info, relations, scores, np.zeros_like(scores),
                      dict.fromkeys(relations, 50), dict.fromkeys(relations, 10), tau=0.15)


def test_gqa_agreement_against_hand_count():
    scores = np.zeros((1, 2, 4))
    scores[0, 0, [0, 1]] = 0.5  # both heads of KV group 0 in layer 0
    g = gqa_agreement(_scan(scores, ["r"], n_kv_heads=2))[0]
    assert (g["heads"], g["groups"], g["share"]) == (2, 1, 1.0)
    # chance: 2 of 4 heads at random, groups of 2: P(group empty) = 1/6, E[touched] = 5/3
    assert g["chance"] == pytest.approx(0.6, abs=1e-4)
    assert gqa_agreement(_scan(scores, ["r"], n_kv_heads=4)) == []


def test_report_and_summary_markdown_agree():
    """One analysis: the page's GQA and multi-relation tables are the summary's."""
    scan, _ = synthetic_scan(n_layers=6, n_heads=8, n_relations=5, seed=3, with_extras=False)
    scan = dataclasses.replace(scan, model_info=dict(scan.model_info, n_kv_heads=2))
    data = payload(build_report(scan))["summary"]
    frame = scan.gqa_agreement()
    assert [g["relation"] for g in data["gqa"]] == list(frame["relation"])
    assert [g["share"] for g in data["gqa"]] == pytest.approx(list(frame["share"]), abs=1e-4)
    multi = scan.multi_relation_heads()
    assert [m["head"] for m in data["multi"]] == list(multi["head"])[:50]
    md = scan.summary_markdown()
    for rel, share in zip(frame["relation"], frame["share"]):
        assert f"| {rel} |" in md and f"{share:.3f}" in md


def test_summaries():
    assert kv_group_size(_scan(np.zeros((1, 1, 9)), ["a"], 3)) == 3
    assert kv_group_size(_scan(np.zeros((1, 1, 9)), ["a"])) == 1
    assert kv_group_size(_scan(np.zeros((1, 1, 9)), ["a"], 4)) == 1
    scores = np.zeros((3, 2, 2))
    scores[:, 1, 0] = 0.9
    scores[0, 0, 1] = 0.9
    multi = multi_relation_heads(_scan(scores, ["a", "b", "c"]))
    assert multi == [{"head": "1.0", "relations": ["a", "b", "c"], "max": 0.9}]
    scores[[0, 1], 0, 0] = [0.95, 0.2]  # two relations, but a better score than 1.1 below
    scores[[0, 1], 1, 1] = [0.5, 0.5]
    order = [m["head"] for m in multi_relation_heads(_scan(scores, ["a", "b", "c"]))]
    assert order == ["1.0", "0.0", "1.1"]  # most relations, then best score
    cov = coverage_per_layer([{"d": "x"}, None, None, {"u": 1}], 2, 2)
    assert cov == {"described": [1, 0], "unclear": [0, 1], "none": [1, 1]}
    assert coverage_per_layer([{"s": []}, None, None, None], 2, 2) is None


def test_typed_parts_are_encoded_in_one_step(tmp_path):
    """A head report's salient operations and descriptions reach the page as they are."""
    from headmaps import HeadReport, SalientAll

    scan = _scan(np.zeros((1, 2, 3), np.float32), ["a"])
    strings = {1: " a", 2: " b", 3: " x", 4: " y", 5: " z", 6: " w"}
    sal = SalientAll([1], 3, np.array([[[1, 2]] * 3]), np.array([[[2.0, 1.0]] * 3]),
                     np.array([[[[3, 4], [5, 6]]] * 3]), np.array([[[[3.0, 2.0], [1.0, 0.5]]] * 3]),
                     strings)
    descs = [Description(1, 2, "maps a to x", "relation",
                         evidence=[{"source": " a", "target": " x", "why": "rel"}],
                         confidence=0.8),
             Description(0, 0, "Unclear", "unclear", unclear=True)]
    payload, heads = encode(HeadReport(scan, sal, descs), "t")
    toks = payload["toks"]
    h12 = heads[1 * 3 + 2]
    assert [toks[i] for i in (h12["s"][1][0], h12["s"][1][2][0], h12["s"][1][2][2])] == \
        [" b", " z", " w"]
    assert h12["s"][1][1] == 1.0 and h12["s"][1][2][3] == 0.5
    assert h12["d"] == "maps a to x" and h12["e"] == [" a \u2192  x (rel)"] and h12["c"] == 0.8
    assert heads[0]["u"] == 1 and "d" not in heads[0]
    assert heads[1] is None  # layer 0 was not computed, nor described
    assert payload["summary"]["coverage"] == {"described": [0, 1], "unclear": [1, 0],
                                              "none": [2, 2]}
    # hand-written extras win head by head, field by field
    _, heads = encode(HeadReport(scan, sal, descs), "t",
                      normalise_extras({"1.2": {"description": "by hand"}}, 2, 3))
    assert heads[5]["d"] == "by hand" and heads[5]["c"] == 0.8
    e = {"1.2": {"description": "d", "salient": [{"token": "a", "saliency": 1,
                                                 "targets": [["b", 2]]}]}}
    f = tmp_path / "x.json"
    f.write_text(json.dumps(e))
    assert load_extras(f) == json.loads(json.dumps(e))
    f.write_text("[1]")
    with pytest.raises(HeadmapsError):
        load_extras(f)
