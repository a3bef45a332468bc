"""`headmaps info MODEL`: the model's facts, and what the default stream runs in here."""

from __future__ import annotations

import headmaps.cli as cli

AVX2 = {"avx2": True, "avx512_f": False, "avx512_bf16": False, "amx_bf16": False}
AMX = {"avx2": True, "avx512_f": True, "avx512_bf16": False, "amx_bf16": True}


def test_info_says_what_the_default_stream_runs_in_here(model_dir, cpu, capsys):
    cpu(AVX2)
    assert cli.main(["info", model_dir]) == 0
    out = capsys.readouterr().out
    assert "n_layers" in out
    line = [x for x in out.splitlines() if x.startswith("stream_dtype")]
    assert line and "float32 (auto: no native bfloat16 on this CPU" in line[0]
    cpu(AMX)
    assert cli.main(["info", model_dir]) == 0
    assert "bfloat16 screen, float32 decisions (auto: native bfloat16 on this CPU (amx_bf16))" \
        in capsys.readouterr().out


def test_info_says_how_many_rows_the_stream_advances_at_a_time(model_dir, cpu, capsys,
                                                               monkeypatch):
    from headmaps.projection import chunking

    cpu(AVX2)  # float32 here
    monkeypatch.setattr(chunking, "last_level_cache", lambda: (1 << 20, "L3 1 MiB"))
    assert cli.main(["info", model_dir]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("stream_chunk")]
    assert line and line[0].split()[1:] == ["512", "rows", "(L3", "1", "MiB)"]
    monkeypatch.setattr(chunking, "last_level_cache", lambda: (None, "cache size unknown"))
    assert cli.main(["info", model_dir]) == 0
    assert "4096 rows (cache size unknown)" in capsys.readouterr().out
