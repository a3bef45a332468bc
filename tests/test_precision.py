"""The stream's precision rule, every branch forced by patching the capabilities it reads.

The rule must hold on any machine, so no test here depends on the CPU that runs it: each
patches :func:`headmaps.hardware.cpu_capabilities` (or CUDA's queries).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

import headmaps as hm
from headmaps import hardware
from headmaps import projection as P
from headmaps.errors import HeadmapsError
from headmaps.projection import precision
from headmaps.projection import vocabulary as S

AVX512_BF16 = {"avx2": True, "avx512_f": True, "avx512_bf16": True, "amx_bf16": False}
AMX = {"avx2": True, "avx512_f": True, "avx512_bf16": False, "amx_bf16": True}
AVX2 = {"avx2": True, "avx512_f": False, "avx512_bf16": False, "amx_bf16": False}
AVX512_NO_BF16 = {"avx2": True, "avx512_f": True, "avx512_bf16": False, "amx_bf16": False}


@pytest.mark.parametrize("flags, dtype, word", [
    (AVX512_BF16, "bfloat16", "avx512_bf16"),
    (AMX, "bfloat16", "amx_bf16"),
    (AVX2, "float32", "no native bfloat16"),
    (AVX512_NO_BF16, "float32", "no native bfloat16"),
    ({}, "float32", "cannot read"),
])
def test_auto_follows_the_cpu(cpu, flags, dtype, word):
    cpu(flags)
    got, reason = precision.choose("auto", "cpu")
    assert got == dtype
    assert reason.startswith("auto: ") and word in reason


@pytest.mark.parametrize("cap, dtype", [("AVX2", "float32"), ("avx512_core", "float32"),
                                        ("AVX512_CORE_BF16", "bfloat16"),
                                        ("AVX512_CORE_AMX", "bfloat16"), ("ALL", "bfloat16")])
def test_a_onednn_cap_below_bfloat16_means_emulated(cpu, monkeypatch, cap, dtype):
    # torch's CPU bfloat16 products run through oneDNN: capped below AVX512_CORE_BF16 they
    # are emulated whatever the CPU has (2.3 GFLOP/s against 417 uncapped on Zen 4)
    cpu(AVX512_BF16)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    got, reason = precision.choose("auto", "cpu")
    assert got == dtype
    assert ("capped at" in reason) == (dtype == "float32")


def test_older_onednn_cap_name_is_read_too(cpu, monkeypatch):
    cpu(AMX)
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "avx2")
    assert precision.choose("auto", "cpu")[0] == "float32"
    assert hardware.machine()["kernels"].endswith("oneDNN capped at AVX2")


def test_a_torch_without_onednn_emulates_bfloat16(cpu, monkeypatch):
    cpu(AVX512_BF16)
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    got, reason = precision.choose("auto", "cpu")
    assert got == "float32" and "no oneDNN" in reason


@pytest.mark.parametrize("capability, dtype", [((8, 0), "bfloat16"), ((9, 0), "bfloat16"),
                                               ((7, 5), "float32")])
def test_auto_follows_the_cuda_compute_capability(monkeypatch, capability, dtype):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Some GPU")
    got, reason = precision.choose("auto", torch.device("cuda", 0))
    assert got == dtype
    assert "Some GPU" in reason and f"sm_{capability[0]}{capability[1]}" in reason


def test_other_devices_are_float32():
    assert precision.choose("auto", "meta") == ("float32",
                                                "auto: bfloat16 is not known to be native on meta")


def test_asked_dtypes_are_kept_and_emulation_is_said(cpu):
    cpu(AVX2)
    assert precision.choose("float32") == ("float32", "asked")
    dtype, reason = precision.choose("bfloat16")
    assert dtype == "bfloat16" and "emulated" in reason
    cpu(AVX512_BF16)
    assert precision.choose("bfloat16") == ("bfloat16", "asked")
    assert precision.choose("float32") == ("float32", "asked")


def test_unknown_choice_is_a_one_line_error():
    with pytest.raises(HeadmapsError, match="unknown stream dtype 'float16'"):
        precision.choose("float16")
    with pytest.raises(HeadmapsError, match="unknown stream dtype"):
        P.ProjectionOptions(source="token_alone", stream_dtype="int8")


def test_stream_fields_are_not_part_of_the_projection(tiny_llama_hm):
    a = replace(P.PRESETS["through"], stream_dtype="bfloat16", stream_reason="asked")
    assert a == P.PRESETS["through"]
    assert hm.projection_for(tiny_llama_hm, a).name == "through"
    shown = P.label("custom", replace(a, prefix="x"))
    assert "stream" not in shown


def test_concrete_decides_auto_for_this_machine(cpu, tiny_llama_hm):
    m = tiny_llama_hm
    cpu(AVX512_BF16)
    made_there = P.concrete(m, P.PRESETS["through"])
    assert made_there.stream_dtype == "bfloat16"
    assert P.concrete(m, made_there) is made_there  # already decided: unchanged
    cpu(AVX2)  # options read back on another machine: an automatic choice is made again
    here = P.concrete(m, made_there)
    assert (here.stream_dtype, here.stream_reason.startswith("auto: no native")) == \
        ("float32", True)
    asked = P.concrete(m, replace(P.PRESETS["through"], stream_dtype="bfloat16"))
    assert asked.stream_dtype == "bfloat16" and asked.stream_reason.startswith("asked")


def test_resolve_takes_stream_dtype_without_making_the_projection_explicit(cpu, tiny_llama_hm):
    cpu(AVX2)
    proj = hm.projection_for(tiny_llama_hm, stream_dtype="bfloat16")
    assert proj.name == P.DEFAULT_PRESET and proj.calibration["status"] == "uncalibrated"
    opts = proj.options
    assert (opts.stream_dtype, opts.stream_reason.split(" ")[0]) == ("bfloat16", "asked")
    proj = hm.projection_for(tiny_llama_hm, "norms", stream_dtype="float32")
    assert (proj.name, proj.calibration, proj.options.stream_dtype) == ("norms", {}, "float32")
    with pytest.raises(HeadmapsError, match="unknown stream dtype"):
        hm.projection_for(tiny_llama_hm, stream_dtype="half")


@pytest.mark.parametrize("flags, screened", [(AVX512_BF16, True), (AVX2, False)])
def test_the_vocabulary_stream_follows_the_rule(cpu, tiny_llama_hm, flags, screened):
    cpu(flags)
    opts = hm.projection_for(tiny_llama_hm, "alone").options
    assert S.vocabulary_sources(tiny_llama_hm, opts).screened is screened


@pytest.mark.parametrize("flags, dtype", [(AVX512_BF16, "bfloat16"), (AVX2, "float32")])
def test_results_record_the_choice_and_its_reason(cpu, tiny_llama_hm, tmp_path, flags, dtype):
    cpu(flags)
    m = tiny_llama_hm
    sal = hm.salient_all(m, layers=[1], projection="alone")
    qk = hm.attention_summary(m, layers=[1], projection="alone", max_distance=4)
    for res in (sal, qk):
        assert res.options["stream_dtype"] == dtype
        assert res.options["stream_reason"].startswith("auto: ")
    back = type(sal).load(sal.save(tmp_path / "salient"))
    assert (back.options["stream_dtype"], back.options["stream_reason"]) == \
        (dtype, sal.options["stream_reason"])

