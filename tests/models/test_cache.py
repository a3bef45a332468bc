"""The model cache under faults and concurrency: kills, two builders, corrupt entries."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import headmaps.cli as cli
from headmaps.models import cache

#: A child process that builds cache entry "key" slowly (it writes, then sleeps).
_BUILDER = textwrap.dedent("""
    import logging, sys, time
    from pathlib import Path
    from headmaps.models import cache

    def build(folder: Path) -> None:
        (folder / "weights.bin").write_bytes(b"w" * 3_000_000)
        Path(sys.argv[2]).write_text("started")
        if len(sys.argv) > 3:  # hold the lock until the other process is about to ask for it
            while not Path(sys.argv[3]).exists():
                time.sleep(0.05)
        time.sleep(float(sys.argv[1]))

    logging.basicConfig()
    Path(sys.argv[2] + ".asking").write_text("")
    entry = cache.get_or_build("key", build)
    print(entry.name, (entry / "weights.bin").stat().st_size)
""")


def _builder(tmp_path: Path, sleep: float, flag: str, wait_for: str | None = None):
    env = {**os.environ, "HEADMAPS_CACHE": str(tmp_path / "cache")}
    argv = [sys.executable, "-c", _BUILDER, str(sleep), str(tmp_path / flag)]
    argv += [str(tmp_path / wait_for)] if wait_for else []
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _wait_for(path: Path, timeout: float = 60.0) -> None:
    t0 = time.time()
    while not path.exists():
        assert time.time() - t0 < timeout, f"{path} never appeared"
        time.sleep(0.05)


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "models").iterdir() if not p.name.endswith(".lock"))


def test_two_processes_building_at_once_both_succeed_with_one_entry(tmp_path):
    first = _builder(tmp_path, 1.0, "a", wait_for="b.asking")
    _wait_for(tmp_path / "a")
    second = _builder(tmp_path, 0.0, "b")
    out1, _ = first.communicate(timeout=60)
    out2, err2 = second.communicate(timeout=60)
    assert first.returncode == 0 and second.returncode == 0
    assert out1 == out2 == "key 3000000\n"
    assert not (tmp_path / "b").exists()  # the second waited for the first and did not build
    assert "waiting for another process" in err2
    assert _leftovers(tmp_path / "cache") == ["key"]


def test_a_killed_build_is_cleaned_by_the_next_run(tmp_path, monkeypatch):
    victim = _builder(tmp_path, 60.0, "a")
    _wait_for(tmp_path / "a")
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    root = tmp_path / "cache"
    stale = _leftovers(root)
    assert len(stale) == 1 and stale[0].startswith(".key.") and stale[0].endswith(".tmp")
    monkeypatch.setenv("HEADMAPS_CACHE", str(root))
    assert [i.status for i in cache.list_cache() if i.kind == "model"] == ["stale"]
    entry = cache.get_or_build("key", lambda d: (d / "weights.bin").write_bytes(b"v"))
    assert _leftovers(root) == ["key"] and (entry / "weights.bin").read_bytes() == b"v"


def test_clean_removes_stale_builds_but_not_live_ones(tmp_path, monkeypatch, capsys):
    root = tmp_path / "cache"
    victim = _builder(tmp_path, 60.0, "a")
    _wait_for(tmp_path / "a")
    monkeypatch.setenv("HEADMAPS_CACHE", str(root))
    try:
        assert cli.main(["cache", "clean"]) == 0
        assert len(_leftovers(root)) == 1  # a live build is never removed
        assert "building" in [i.status for i in cache.list_cache()]
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    assert cli.main(["cache", "list"]) == 0
    listing = capsys.readouterr().out
    assert "stale" in listing and "headmaps cache clean" in listing
    assert cli.main(["cache", "clean"]) == 0
    assert _leftovers(root) == []
    assert "removed 1 items" in capsys.readouterr().out


@pytest.mark.parametrize("damage", ["truncate", "overwrite", "manifest"])
def test_a_corrupt_entry_is_rebuilt_with_a_warning_never_loaded(tmp_path, monkeypatch, caplog,
                                                                  damage):
    monkeypatch.setenv("HEADMAPS_CACHE", str(tmp_path))
    payload = os.urandom(3 * cache.DIGEST_SPAN)
    entry = cache.get_or_build("key", lambda d: (d / "w.bin").write_bytes(payload))
    w = entry / "w.bin"
    if damage == "truncate":
        w.write_bytes(payload[:-10])
    elif damage == "overwrite":  # same size, different last bytes
        w.write_bytes(payload[:-4] + b"\0\0\0\0")
    else:
        (entry / cache.MARKER).write_text("{not json")
    assert not cache.entry_is_complete(entry)
    built = []
    entry = cache.get_or_build("key",
                               lambda d: built.append(1) or (d / "w.bin").write_bytes(payload))
    assert built == [1] and (entry / "w.bin").read_bytes() == payload
    assert "incomplete or corrupt; rebuilding" in caplog.text
    assert set(json.loads((entry / cache.MARKER).read_text())) == {"files", "digests"}


def test_an_unwritable_cache_is_one_line_before_a_conversion(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADMAPS_CACHE", "/proc/headmaps-cache")
    with pytest.raises(Exception, match="cannot write the headmaps cache .*HEADMAPS_CACHE"):
        cache.get_or_build("key", lambda d: pytest.fail("must not build"))


def test_a_readonly_cache_that_holds_the_entry_still_serves_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADMAPS_CACHE", str(tmp_path))
    entry = cache.get_or_build("key", lambda d: (d / "w.bin").write_bytes(b"x"))
    monkeypatch.setattr(cache, "check_cache_writable", lambda: pytest.fail("must not write"))
    assert cache.get_or_build("key", lambda d: pytest.fail("must not build")) == entry


@pytest.mark.slow
def test_real_conversion_killed_then_two_processes_at_once(tmp_path):
    """The SmolLM2 GGUF converted into an empty cache: killed part-way, then twice at once."""
    env = {**os.environ, "HEADMAPS_CACHE": str(tmp_path)}
    cmd = [sys.executable, "-m", "headmaps.cli", "info", "smollm2-135m"]
    victim = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while not any(p.name.endswith(".tmp") for p in (tmp_path / "models").glob(".*")):
        assert time.time() - t0 < 120 and victim.poll() is None, "the conversion never started"
        time.sleep(0.1)
    time.sleep(2.0)  # part-way through the conversion
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert any(p.name.endswith(".tmp") for p in (tmp_path / "models").iterdir())
    runs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(2)]
    outs = [r.communicate(timeout=600) for r in runs]
    assert [r.returncode for r in runs] == [0, 0], [o[1][-500:] for o in outs]
    assert all("n_kv_heads" in o[0] for o in outs)
    left = _leftovers(tmp_path)
    assert len(left) == 1 and not left[0].startswith(".")
    assert cache.entry_is_complete(tmp_path / "models" / left[0])

