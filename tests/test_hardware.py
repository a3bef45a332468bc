"""What the machine can do, read from a fake sysfs so no test depends on the real CPU."""

from __future__ import annotations

import pytest

from headmaps import hardware


@pytest.mark.parametrize("text, want", [
    ("32768K\n", 32 << 20), ("1M", 1 << 20), ("48K", 48 << 10), ("2G", 2 << 30),
    ("512", 512), ("", None), ("0K", None), ("big", None),
])
def test_cache_sizes_are_read_in_bytes(text, want):
    assert hardware._size_bytes(text) == want


def _index(root, n, level, kind, size):
    d = root / f"index{n}"
    d.mkdir(parents=True)
    for name, value in (("level", level), ("type", kind), ("size", size)):
        (d / name).write_text(f"{value}\n")


def test_the_highest_data_or_unified_level_is_the_last_level_cache(tmp_path):
    _index(tmp_path, 0, 1, "Data", "32K")
    _index(tmp_path, 1, 1, "Instruction", "32K")
    _index(tmp_path, 2, 2, "Unified", "1024K")
    _index(tmp_path, 3, 3, "Unified", "32768K")
    assert hardware._sysfs_cache(tmp_path) == (3, 32 << 20)


def test_an_instruction_cache_or_a_broken_entry_does_not_count(tmp_path):
    _index(tmp_path, 0, 2, "Unified", "2048K")
    _index(tmp_path, 1, 3, "Instruction", "65536K")
    (tmp_path / "index2").mkdir()  # an entry the kernel left empty
    assert hardware._sysfs_cache(tmp_path) == (2, 2 << 20)
    assert hardware._sysfs_cache(tmp_path / "missing") is None


def test_the_machine_record_names_the_cache():
    size, words = hardware.last_level_cache()
    assert hardware.machine()["cache"] == words
    assert (size is None) == (words == "cache size unknown")
    if size is not None:
        assert words.startswith("L") and words.endswith("MiB")


def test_macos_reads_the_l3_or_else_the_cluster_l2(monkeypatch):
    import subprocess

    answers = {"hw.l3cachesize": "", "hw.perflevel0.l2cachesize": "16777216\n"}

    def fake_run(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 0, stdout=answers.get(cmd[-1], ""))

    monkeypatch.setattr(subprocess, "run", fake_run)
    assert hardware._sysctl_cache() == (2, 16 << 20)
    answers["hw.l3cachesize"] = "12582912"
    assert hardware._sysctl_cache() == (3, 12 << 20)
    answers.clear()
    assert hardware._sysctl_cache() is None
