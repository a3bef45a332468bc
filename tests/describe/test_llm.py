"""LLMDescriber: prompt, strict parsing with one repair, retries, cache.

These tests talk HTTP to a small scripted OpenAI-compatible server run in a thread
(fast, deterministic); ``test_llm_server.py`` runs the describer against a real
llama.cpp server.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from headmaps.describe import LLMDescriber, LLMError, build_messages, parse_answer
from headmaps.describe.llm import AnswerError, cache_key, default_cache_dir, is_unclear
from headmaps.salient import SalientOperations

GOOD = json.dumps({"reasoning": "countries map to capitals", "input_strings": "Country names",
                   "observed_pattern": "Country to its capital city"})


def make_ops(layer=5, head=2) -> SalientOperations:
    src = [" France", " Japan", " Egypt"]
    tgt = [[" Paris", "Paris", " Lyon"], [" Tokyo", "Tok", " Osaka"], [" Cairo", "Ca", " Nile"]]
    return SalientOperations(layer, head, np.arange(3), src, np.ones(3),
                             np.zeros((3, 3), dtype=np.int64),
                             tgt, np.ones((3, 3)))


class Script:
    """Answers to hand out in order: ``(status, content, delay_s)``; the last one repeats."""

    def __init__(self):
        self.answers: list[tuple[int, str, float]] = [(200, GOOD, 0.0)]
        self.requests: list[dict] = []


@pytest.fixture
def server():
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            script.requests.append(body)
            status, content, delay = (script.answers.pop(0) if len(script.answers) > 1
                                      else script.answers[0])
            time.sleep(delay)
            if status == 200:
                payload = {"id": "x", "object": "chat.completion", "created": 0,
                           "model": body["model"],
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": content}}],
                           "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
            else:
                payload = {"error": {"message": content, "type": "error", "code": status}}
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    script.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    yield script
    httpd.shutdown()
    httpd.server_close()


def describer(server, tmp_path, **kw) -> LLMDescriber:
    kw = {"max_retries": 2, "backoff": 0.01, "timeout": 5, "cache_dir": tmp_path / "llm", **kw}
    return LLMDescriber("stub-model", server.url, **kw)


# ---- parsing ---------------------------------------------------------------------------
def test_parse_valid_and_tolerated_wrappings():
    want = {"reasoning": "countries map to capitals", "input_strings": "Country names",
            "observed_pattern": "Country to its capital city"}
    assert parse_answer(GOOD) == want
    assert parse_answer(f"```json\n{GOOD}\n```") == want
    assert parse_answer(f"Sure! Here is my answer:\n{GOOD}\nHope it helps.") == want
    paper_keys = json.dumps({"Reasoning": "r", "Input strings": ["a", "b"],
                             "Observed pattern": "p"})
    assert parse_answer(paper_keys) == {"reasoning": "r", "input_strings": "a, b",
                                        "observed_pattern": "p"}


@pytest.mark.parametrize("bad,why", [
    ("", "empty"),
    ("I think it maps countries to capitals.", "no JSON object"),
    ('{"reasoning": "x", "input_strings": "y", "observed_pattern": "z",}', "invalid JSON"),
    ("[1, 2]", "no JSON object"),
    ('{"reasoning": "x", "observed_pattern": "z"}', "missing key"),
    ('{"reasoning": "x", "input_strings": "y", "observed_pattern": 3}', "not a string"),
    ('{"reasoning": "x", "input_strings": "y", "observed_pattern": "z"', "no JSON object"),
])
def test_parse_rejects(bad, why):
    with pytest.raises(AnswerError, match=why):
        parse_answer(bad)


def test_unclear_words():
    assert (is_unclear("Unclear") and is_unclear(" unclear. ") and is_unclear("")
            and is_unclear('"Unclear"'))
    assert not is_unclear("Country to capital")


def test_prompt_lists_mappings_and_explains_task():
    msgs = build_messages(make_ops())
    text = msgs[-1]["content"]
    assert "France: Paris, Paris, Lyon" in text and "Egypt: Cairo, Ca, Nile" in text
    assert '"s: t1, t2, t3, t4, t5"' in text and "first letter" in text
    for k in ("reasoning", "input_strings", "observed_pattern", "Unclear"):
        assert k in text


# ---- against the scripted server ---------------------------------------------------------
def test_describe_and_cache_hit(server, tmp_path):
    d = describer(server, tmp_path)
    first = d.describe(make_ops())
    assert not first.unclear and first.text == "Country to its capital city"
    assert first.input_strings == "Country names" and first.describer == "llm:stub-model"
    assert first.category == "llm" and first.raw["reasoning"] == "countries map to capitals"
    assert len(server.requests) == 1 and server.requests[0]["temperature"] == 0.0
    again = describer(server, tmp_path).describe(make_ops())  # a new describer, same cache folder
    assert again.text == first.text and len(server.requests) == 1
    files = list((tmp_path / "llm").rglob("*.json"))
    assert len(files) == 1 and not list((tmp_path / "llm").rglob("*.tmp"))
    assert json.loads(files[0].read_text())["answer"] == GOOD
    # another model name is another key
    LLMDescriber("other", server.url, cache_dir=tmp_path / "llm", backoff=0.01).describe(make_ops())
    assert len(server.requests) == 2


def test_cache_off_and_default_dir(server, tmp_path, monkeypatch):
    monkeypatch.setenv("HEADMAPS_CACHE", str(tmp_path / "root"))
    assert default_cache_dir() == tmp_path / "root" / "llm"
    d = LLMDescriber("stub-model", server.url, backoff=0.01)
    d.describe(make_ops())
    d.describe(make_ops())
    assert len(server.requests) == 1 and d.cache_hits == 1
    assert len(list((tmp_path / "root" / "llm").rglob("*.json"))) == 1
    off = describer(server, tmp_path, cache=False)
    off.describe(make_ops())
    off.describe(make_ops())
    assert len(server.requests) == 3
    m = build_messages(make_ops())
    assert cache_key("a", m, {"t": 0}) != cache_key("b", m, {"t": 0}) != cache_key("a", m, {"t": 1})


def test_one_repair_then_success(server, tmp_path):
    server.answers = [(200, "The pattern is country to capital.", 0), (200, GOOD, 0)]
    d = describer(server, tmp_path).describe(make_ops())
    assert not d.unclear and d.text == "Country to its capital city"
    assert len(server.requests) == 2
    repair = server.requests[1]["messages"]
    assert repair[-2] == {"role": "assistant", "content": "The pattern is country to capital."}
    assert "no JSON object" in repair[-1]["content"]


def test_garbage_twice_gives_error_description(server, tmp_path):
    server.answers = [(200, "{not json", 0)]
    d = describer(server, tmp_path).describe(make_ops())
    assert d.unclear and d.category == "error" and d.text == "Unclear"
    assert "after one repair" in d.error and d.raw["answer"] == "{not json"
    assert len(server.requests) == 2  # exactly one repair


def test_unclear_answer(server, tmp_path):
    server.answers = [(200, json.dumps({"reasoning": "r", "input_strings": "Unclear",
                                        "observed_pattern": "Unclear"}), 0)]
    d = describer(server, tmp_path).describe(make_ops())
    assert d.unclear and d.category == "unclear" and d.error is None


def test_retries_transport_errors_with_backoff(server, tmp_path):
    server.answers = [(500, "boom", 0), (503, "busy", 0), (200, GOOD, 0)]
    d = describer(server, tmp_path, backoff=0.05)
    t = time.perf_counter()
    assert not d.describe(make_ops()).unclear
    assert len(server.requests) == 3 and d.requests == 3
    assert time.perf_counter() - t >= 0.05 + 0.1  # waited 0.05 then 0.1


def test_gives_up_after_retries(server, tmp_path):
    server.answers = [(500, "boom", 0)]
    d = describer(server, tmp_path, max_retries=1)
    with pytest.raises(LLMError, match="after 2 tries"):
        d.describe(make_ops())
    assert len(server.requests) == 2


def test_client_errors_are_not_retried(server, tmp_path):
    server.answers = [(400, "bad request: unknown model", 0)]
    with pytest.raises(LLMError, match="HTTP 400"):
        describer(server, tmp_path).describe(make_ops())
    assert len(server.requests) == 1


def test_timeout(server, tmp_path):
    server.answers = [(200, GOOD, 1.0)]
    d = describer(server, tmp_path, timeout=0.2, max_retries=0)
    with pytest.raises(LLMError, match="Timeout"):
        d.describe(make_ops())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_down(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1"
    d = LLMDescriber("m", url, max_retries=2, backoff=0.01, timeout=2, cache_dir=tmp_path)
    t = time.perf_counter()
    with pytest.raises(LLMError,
                       match=r"cannot get an answer from .* after 3 tries: APIConnectionError"):
        d.describe(make_ops())
    assert time.perf_counter() - t < 5 and d.requests == 3
    soft = LLMDescriber("m", url, max_retries=0, cache_dir=tmp_path, on_error="unclear")
    desc = soft.describe(make_ops())
    assert desc.unclear and desc.category == "error" and "APIConnectionError" in desc.error


def test_needs_key_for_openai(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(LLMError, match="OPENAI_API_KEY"):
        LLMDescriber("gpt-4o", cache_dir=tmp_path).describe(make_ops())
