"""User relation files: JSON (list or object) and CSV/TSV, and every malformed-file error."""

from __future__ import annotations

import json

import pytest

import headmaps as hm
import headmaps.relations as R


def write(tmp_path, name, text, *, binary=False):
    path = tmp_path / name
    if binary:
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# ---- good files ------------------------------------------------------------------------
def test_json_list_reference_format(tmp_path):
    path = write(tmp_path, "ref.json", json.dumps([["France", "Paris"], ["Japan", "Tokyo"]]))
    assert R.load(path) == [("France", "Paris"), ("Japan", "Tokyo")]


def test_json_object_with_metadata(tmp_path):
    doc = {"name": "caps", "category": "knowledge", "description": "d", "default_k": 5,
           "prompt_template": "Capital of <X>:", "source_note": "me", "license": "CC0",
           "pairs": [["France", "Paris"]]}
    path = write(tmp_path, "c.json", json.dumps(doc))
    info, pairs = R.read_relation_file(path)
    assert pairs == [("France", "Paris")]
    assert (info.name, info.category, info.default_k,
            info.prompt_template) == ("caps", "knowledge", 5,
                                                                              "Capital of <X>:")
    assert info.extra == {"license": "CC0"}


def test_json_object_minimal(tmp_path):
    path = write(tmp_path, "m.json", '{"pairs": [["a", "b"]]}')
    info = R.info(path)
    assert (info.name, info.category, info.default_k,
            info.prompt_template) == ("m", "custom", 10, None)


def test_whitespace_stripped_and_duplicates_dropped(tmp_path, caplog):
    path = write(tmp_path, "w.json", json.dumps([[" a", "b "], ["a", "b"], ["c", "d"]]))
    with caplog.at_level("WARNING"):
        assert R.load(path) == [("a", "b"), ("c", "d")]
    assert "duplicate" in caplog.text and "whitespace" in caplog.text


def test_csv_with_header(tmp_path):
    path = write(tmp_path, "h.csv", "Source,Target\nFrance,Paris\n\n# comment\nJapan, Tokyo\n")
    assert R.load(path) == [("France", "Paris"), ("Japan", "Tokyo")]


def test_csv_without_header_and_quotes(tmp_path):
    path = write(tmp_path, "n.csv", 'France,Paris\n"Washington, D.C.",USA\n')
    assert R.load(path) == [("France", "Paris"), ("Washington, D.C.", "USA")]


def test_csv_utf8_bom_and_tsv(tmp_path):
    path = write(tmp_path, "b.csv", "\ufeffsource,target\nété,summer\n")
    assert R.load(path) == [("été", "summer")]
    path = write(tmp_path, "t.tsv", "source\ttarget\nFrance\tParis\n")
    assert R.load(path) == [("France", "Paris")]


def test_csv_forced_header(tmp_path):
    path = write(tmp_path, "f.csv", "country,capital\nFrance,Paris\n")
    assert R.read_csv(path, header=True)[1] == [("France", "Paris")]
    assert R.read_csv(path)[1] == [("country", "capital"), ("France", "Paris")]


# ---- malformed files -------------------------------------------------------------------
BAD_JSON = [
    ('[["a", "b"],', "line 1 column", "invalid JSON"),
    ('"just a string"', "expected a JSON object or a list of pairs", None),
    ('{"name": "x"}', "no 'pairs' field", None),
    ('[["a", "b"], ["a", "b", "c"]]', "item 1", "expected a [source, target] pair"),
    ('[["a", "b"], "ab"]', "item 1", "expected a [source, target] pair"),
    ('[["a", 3]]', "item 0", "target must be a string"),
    ('[[null, "b"]]', "item 0", "source must be a string"),
    ('[["a", ""]]', "item 0", "target is empty"),
    ('[["   ", "b"]]', "item 0", "source is empty"),
    ("[]", "no pairs", None),
    ('{"pairs": {"a": "b"}}', "'pairs' must be a list", None),
    ('{"pairs": [["a", "b"], ["c"]]}', "pair 1", "expected a [source, target] pair"),
    ('{"default_k": "ten", "pairs": [["a", "b"]]}', "'default_k' must be a positive integer", None),
    ('{"default_k": 0, "pairs": [["a", "b"]]}', "'default_k' must be a positive integer", None),
    ('{"category": "cooking", "pairs": [["a", "b"]]}', "'category'", "is not one of"),
    ('{"prompt_template": "no placeholder", "pairs": [["a", "b"]]}', "must contain <X>", None),
    ('{"name": "", "pairs": [["a", "b"]]}', "'name' must be a non-empty string", None),
    ('{"schema_version": 2, "pairs": [["a", "b"]]}', "unsupported version", None),
]


BAD_CSV = [
    ("source,target\nFrance,Paris\nJapan,Tokyo,Honshu\n", "line 3", "expected 2 columns"),
    ("France\n", "line 1", "expected 2 columns"),
    ("France,Paris\n,Tokyo\n", "line 2", "source is empty"),
    ("France,Paris\nJapan,\n", "line 2", "target is empty"),
    ("source,target\n\n# nothing\n", "no pairs", None),
    ("", "no pairs", None),
    ('France,"Paris\n', "line 1", "unexpected end of data"),
    ('France,"Pa"ris\n', "line 1", "expected after"),
]


@pytest.mark.parametrize(("name", "text", "where", "problem"),
                         [("bad.json", *case) for case in BAD_JSON]
                         + [("bad.csv", *case) for case in BAD_CSV])
def test_malformed_file(tmp_path, name, text, where, problem):
    """A malformed JSON or CSV relation file names the file, the place and the problem."""
    path = write(tmp_path, name, text)
    with pytest.raises(R.RelationDataError) as exc:
        R.load(path)
    msg = str(exc.value)
    assert str(path) in msg and where in msg
    if problem:
        assert problem in msg
    assert isinstance(exc.value, hm.HeadmapsError) and isinstance(exc.value, ValueError)


def test_not_utf8(tmp_path):
    path = write(tmp_path, "latin.csv", "caf\xe9,coffee\n".encode("latin-1"), binary=True)
    with pytest.raises(R.RelationDataError, match="not UTF-8"):
        R.load(path)


def test_unsupported_suffix(tmp_path):
    path = write(tmp_path, "pairs.txt", "a b\n")
    with pytest.raises(R.RelationDataError, match="unsupported file type '.txt'"):
        R.load(path)


def test_directory(tmp_path):
    (tmp_path / "dir.json").mkdir()
    with pytest.raises((R.RelationDataError, R.UnknownRelationError)):
        R.load(tmp_path / "dir.json")


def test_strict_json_rejects_what_user_files_may_do(tmp_path):
    path = write(tmp_path, "s.json", json.dumps({"pairs": [["a", "b"]]}))
    with pytest.raises(R.RelationDataError, match="missing field"):
        R.read_json(path, strict=True)
    doc = {"schema_version": 1, "name": "s", "category": "linguistic", "description": "d",
           "default_k": 10,
           "source_note": "n", "prompt_template": "<X>", "pairs": [["a ", "b"]]}
    path = write(tmp_path, "s.json", json.dumps(doc))
    with pytest.raises(R.RelationDataError,
                       match="pair 0: source 'a ' has leading/trailing whitespace"):
        R.read_json(path, strict=True)
