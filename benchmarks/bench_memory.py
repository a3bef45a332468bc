"""Peak memory and time of a lazy MAPS scan against an eager transformers load.

Writes (once; reused when present) a synthetic random checkpoint with the exact config,
tensor names, shapes, dtype (bf16) and sharding (4 shards of at most 5 GB with
``model.safetensors.index.json``) of Llama-3.1-8B, plus a tokenizer whose ids fit its
vocabulary (SmolLM2's, ids < 49152). Then, each in its own subprocess so that peak RSS
is per path:

  (a) ``hm.load(dir, lazy=True)`` + ``hm.scan(model, ["country_to_capital"])``;
  (b) ``AutoModelForCausalLM.from_pretrained(dir, dtype=torch.bfloat16)`` plus one
      forward pass of 4 tokens (transformers 5 maps the files at load and reads the
      weights only when the model runs; both peaks are printed).

Usage::

    python benchmarks/bench_memory.py                  # Llama-3.1-8B shapes (16 GB on disk)
    python benchmarks/bench_memory.py --layers 2 --paths scan,eager --force-eager
    python benchmarks/bench_memory.py --small          # a 0.7 GB stand-in, for a quick check
    python benchmarks/bench_memory.py --workdir /data/bench --json results.json

The page cache of the checkpoint is dropped (``posix_fadvise DONTNEED``) before each
measured run, so both start cold. (b) is skipped with a message when the machine does
not have the memory for it (``--force-eager`` overrides). ``--paths`` picks the runs;
``--layers N`` times the first N layers only (the peak is per layer, so unaffected).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: The config.json of meta-llama/Llama-3.1-8B (public facts: sizes, rope, norms).
LLAMA31_8B: dict = {
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 128000,
    "eos_token_id": 128001,
    "hidden_act": "silu",
    "hidden_size": 4096,
    "initializer_range": 0.02,
    "intermediate_size": 14336,
    "max_position_embeddings": 131072,
    "mlp_bias": False,
    "model_type": "llama",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "use_cache": True,
    "vocab_size": 128256,
}

#: A quick stand-in: same vocabulary and layout, 1024 wide, 8 layers (~0.7 GB).
SMALL: dict = dict(LLAMA31_8B, hidden_size=1024, intermediate_size=3584, num_hidden_layers=8,
                   num_attention_heads=16, num_key_value_heads=4)

#: The 70B config used for the estimate (Llama-3.1-70B).
LLAMA31_70B = dict(LLAMA31_8B, hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
                   num_attention_heads=64, num_key_value_heads=8)

SHARD_BYTES = {"8b": 5_000_000_000, "small": 256_000_000}
GB = 1e9


# ---- the synthetic checkpoint -------------------------------------------------------------

def tensor_layout(cfg: dict) -> list[tuple[str, tuple[int, ...], float]]:
    """(name, shape, init std; 0 means a norm gain near 1) of every Llama tensor, in save order."""
    d, n_layers = cfg["hidden_size"], cfg["num_hidden_layers"]
    h, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    dh, inter, vocab = d // h, cfg["intermediate_size"], cfg["vocab_size"]
    out = [("model.embed_tokens.weight", (vocab, d), 0.02)]
    for i in range(n_layers):
        p = f"model.layers.{i}"
        out += [
            (f"{p}.input_layernorm.weight", (d,), 0.0),
            (f"{p}.mlp.down_proj.weight", (d, inter), 0.02),
            (f"{p}.mlp.gate_proj.weight", (inter, d), 0.02),
            (f"{p}.mlp.up_proj.weight", (inter, d), 0.02),
            (f"{p}.post_attention_layernorm.weight", (d,), 0.0),
            (f"{p}.self_attn.k_proj.weight", (kv * dh, d), 0.02),
            (f"{p}.self_attn.o_proj.weight", (d, h * dh), 0.02),
            (f"{p}.self_attn.q_proj.weight", (h * dh, d), 0.02),
            (f"{p}.self_attn.v_proj.weight", (kv * dh, d), 0.02),
        ]
    out += [("model.norm.weight", (d,), 0.0), ("lm_head.weight", (vocab, d), 0.02)]
    return out


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def shard_plan(layout, max_bytes: int) -> list[list[tuple[str, tuple[int, ...], float]]]:
    """Greedy sharding in save order, as ``save_pretrained(max_shard_size=...)`` does."""
    shards, cur, size = [], [], 0
    for item in layout:
        n = _numel(item[1]) * 2
        if cur and size + n > max_bytes:
            shards.append(cur)
            cur, size = [], 0
        cur.append(item)
        size += n
    if cur:
        shards.append(cur)
    return shards


def write_safetensors(path: Path, tensors, seed: int, chunk: int = 1 << 23) -> int:
    """Stream random bf16 tensors into a safetensors file without holding them in memory."""
    import torch

    header, offset = {}, 0
    for name, shape, _ in tensors:
        n = _numel(shape) * 2
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    g = torch.Generator().manual_seed(seed)
    tmp = path.with_suffix(".partial")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for _name, shape, std in tensors:
            left = _numel(shape)
            while left:
                n = min(chunk, left)
                x = torch.randn(n, generator=g)
                x = x.mul_(0.1).add_(1.0) if std == 0.0 else x.mul_(std)
                f.write(x.to(torch.bfloat16).view(torch.int16).numpy().data)
                left -= n
        f.flush()
        os.fsync(f.fileno())
    _drop_cache(tmp)
    os.replace(tmp, path)
    return offset


def _drop_cache(path: Path) -> None:
    """Ask the kernel to forget a file's cached pages (so the next read is cold)."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    except (OSError, AttributeError):
        pass


def save_tokenizer(folder: Path, tokenizer_dir: str | None) -> str:
    """Put a tokenizer whose ids fit the vocabulary into ``folder``; returns its origin."""
    if tokenizer_dir:
        for f in Path(tokenizer_dir).iterdir():
            if f.name.startswith(("tokenizer", "special_tokens", "vocab", "merges",
                                  "added_tokens")):
                shutil.copy(f, folder / f.name)
        return tokenizer_dir
    import headmaps as hm

    m = hm.load("smollm2-135m")
    m.tokenizer.save_pretrained(folder)
    return f"SmolLM2-135M ({m.origin})"


def ensure_checkpoint(folder: Path, cfg: dict, shard_bytes: int, tokenizer_dir: str | None) -> dict:
    """Write the checkpoint unless a complete one with the same config is there."""
    marker = folder / "bench_complete.json"
    want = {"config": cfg, "shard_bytes": shard_bytes}
    if marker.is_file() and json.loads(marker.read_text()).get("spec") == want:
        print(f"reusing checkpoint in {folder}")
        return json.loads(marker.read_text())
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    layout = tensor_layout(cfg)
    shards = shard_plan(layout, shard_bytes)
    total = sum(_numel(s) * 2 for _, s, _ in layout)
    free = shutil.disk_usage(folder).free
    if free < total * 1.05:
        sys.exit(f"not enough disk in {folder}: need {total / GB:.1f} GB, have {free / GB:.1f} GB")
    print(f"writing {total / GB:.2f} GB of random bf16 in {len(shards)} shards to {folder} ...")
    t0 = time.perf_counter()
    weight_map = {}
    for i, tensors in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        n = write_safetensors(folder / name, tensors, seed=i)
        weight_map.update({t[0]: name for t in tensors})
        print(f"  {name}: {n / GB:.2f} GB ({time.perf_counter() - t0:.0f} s)")
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    (folder / "config.json").write_text(json.dumps(cfg, indent=2))
    origin = save_tokenizer(folder, tokenizer_dir)
    info = {"spec": want, "total_bytes": total, "n_shards": len(shards), "tokenizer": origin,
            "write_seconds": time.perf_counter() - t0}
    marker.write_text(json.dumps(info, indent=2))
    return info


# ---- the measured children ----------------------------------------------------------------

def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def _memory_report() -> dict:
    return {
        "peak_rss_bytes": _status_kb("VmHWM") * 1024,
        "ru_maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rss_anon_bytes": _status_kb("RssAnon") * 1024,
        "rss_file_bytes": _status_kb("RssFile") * 1024,
    }


def _be_first_to_go() -> None:
    """If memory runs out, let the OOM killer pick this benchmark, not someone else's work."""
    try:
        Path("/proc/self/oom_score_adj").write_text("1000")
    except OSError:
        pass


def _limit_layers(model, n: int | None) -> None:
    """Make ``model`` look like its first ``n`` layers (timing runs; memory is per layer)."""
    import dataclasses

    if n and n < model.n_layers:
        model.spec = dataclasses.replace(model.spec, n_layers=n)


def child_lazy(folder: str, relation: str, layers: int | None) -> dict:
    """(a): lazy load + ``hm.scan`` of one relation."""
    _be_first_to_go()
    import torch

    import headmaps as hm

    torch.set_grad_enabled(False)
    base = _status_kb("VmRSS") * 1024
    t0 = time.perf_counter()
    model = hm.load(folder, lazy=True)
    t_load = time.perf_counter() - t0
    store = model.adapter.store
    n_layers_model = model.n_layers
    _limit_layers(model, layers)
    t1 = time.perf_counter()
    res = hm.scan(model, [relation])
    t_scan = time.perf_counter() - t1
    return {"path": "lazy-scan", "how": "hm.scan", "n_layers_model": n_layers_model,
            "baseline_rss_bytes": base, "load_seconds": t_load,
            "scan_seconds": t_scan, "wall_seconds": time.perf_counter() - t0,
            "bytes_read": store.bytes_read, "tensors_read": store.tensors_read,
            "n_layers": model.n_layers, "n_heads": model.n_heads,
            "n_pairs": res.n_pairs.get(relation),
            "best_score": float(res.scores.max()) if res.scores.size else None, **_memory_report()}


def child_eager(folder: str) -> dict:
    """(b): transformers ``from_pretrained`` of the same checkpoint."""
    _be_first_to_go()
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.set_grad_enabled(False)
    base = _status_kb("VmRSS") * 1024
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16)
    t_load = time.perf_counter() - t0
    after_load = _memory_report()
    # transformers 5 maps safetensors without reading them; the first forward pass reads
    # every weight, which is what any use of the eager model does
    t1 = time.perf_counter()
    model(torch.tensor([[1, 2, 3, 4]]))
    t_fwd = time.perf_counter() - t1
    n = sum(p.numel() for p in model.parameters())
    return {"path": "eager", "baseline_rss_bytes": base, "load_seconds": t_load,
            "forward_seconds": t_fwd, "wall_seconds": time.perf_counter() - t0,
            "after_load": after_load, "n_params": n, **_memory_report()}


def run_child(kind: str, folder: Path, relation: str, layers: int | None = None) -> dict:
    """Run one measurement in a fresh interpreter; returns its JSON report."""
    for f in folder.glob("*.safetensors"):
        _drop_cache(f)
    cmd = [sys.executable, __file__, "--child", kind, "--workdir", str(folder), "--relation",
           relation]
    if layers:
        cmd += ["--layers", str(layers)]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if p.returncode != 0 or line is None:
        hint = " (killed: out of memory?)" if p.returncode in (-9, 137) else ""
        raise RuntimeError(f"{kind} run failed with code {p.returncode}{hint}:\n{p.stderr[-3000:]}")
    out = json.loads(line[len("RESULT "):])
    out["process_seconds"] = wall
    return out


def mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


# ---- the report ---------------------------------------------------------------------------

def layer_flops(c: dict, n_sources: int) -> float:
    """FLOPs of one layer of a scan: ``W_O U`` for all heads plus the sources' logits.

    ``2 * n_heads * d_head * V * (d_model + n_sources)`` (the dense floor; ``n_heads * d_head``
    is ``d_model`` for Llama).
    """
    h, d, v = c["num_attention_heads"], c["hidden_size"], c["vocab_size"]
    return 2.0 * h * (d // h) * v * (d + n_sources)


def read_sizes(c: dict) -> tuple[float, float, float]:
    """Bytes of E + U, of one layer's V/O/norm, and of the whole checkpoint (bf16)."""
    d, h = c["hidden_size"], c["num_attention_heads"]
    kv, v = c["num_key_value_heads"], c["vocab_size"]
    dh = d // h
    layer = (kv * dh * d + d * h * dh + d) * 2
    return 2 * v * d * 2, layer, sum(_numel(s) * 2 for _, s, _ in tensor_layout(c))


def estimate_70b_peak(lazy: dict, cfg: dict) -> tuple[float, float]:
    """(working bytes of this run, estimated 70B peak bytes) for one lazy run.

    Working memory is the peak minus the interpreter, ``U`` (bf16, read whole) and one
    layer's weights (``E`` is only read at the source rows). Its buffers (``U`` in
    float32, ``W_O U``, logit chunks) grow at most with d_model, so it is scaled by the
    d_model ratio.
    """
    big = LLAMA31_70B
    _, layer, _ = read_sizes(cfg)
    _, layer70, _ = read_sizes(big)
    u, u70 = cfg["vocab_size"] * cfg["hidden_size"] * 2, big["vocab_size"] * big["hidden_size"] * 2
    work = max(lazy["peak_rss_bytes"] - lazy["baseline_rss_bytes"] - u - layer, 0)
    return work, (lazy["baseline_rss_bytes"] + u70 + layer70
                  + work * big["hidden_size"] / cfg["hidden_size"])


def estimate_70b(lazy: dict, cfg: dict) -> str:
    """A paragraph: how a Llama-3.1-70B scan would run on a 32 GB laptop, from these numbers."""
    big = LLAMA31_70B
    n_src = lazy["n_pairs"] or 100
    eu70, layer70, total70 = read_sizes(big)
    s_layer = lazy["scan_seconds"] / lazy["n_layers"]
    rate = layer_flops(cfg, n_src) / s_layer
    flops70 = layer_flops(big, n_src) * big["num_hidden_layers"]
    work, peak70 = estimate_70b_peak(lazy, cfg)
    read70 = eu70 + big["num_hidden_layers"] * layer70
    return (
        f"Llama-3.1-70B (80 layers x 64 heads, d_model 8192) is {total70 / GB:.0f} GB in bf16, so "
        f"an eager load cannot run on a 32 GB laptop. The lazy scan reads E and U "
        f"({eu70 / GB:.1f} GB) once and then {layer70 / 1e6:.0f} MB of V/O weights per layer, "
        f"{read70 / GB:.1f} GB in all ({100 * read70 / total70:.0f}% of the checkpoint). Memory: "
        f"this run ({lazy['how']}) needed {work / GB:.1f} GB of working buffers beyond U and one "
        f"layer; scaled by the d_model ratio ({big['hidden_size'] / cfg['hidden_size']:.0f}x) the "
        f"70B peak is about {peak70 / GB:.1f} GB, which fits in 32 GB. Time: a scan costs "
        f"{layer_flops(big, n_src) / 1e12:.1f} TFLOP per layer for {n_src} sources, "
        f"{flops70 / 1e15:.2f} PFLOP over 80 layers, nearly independent of the number of relations "
        f"scored together (each adds only its sources' rows). This machine reached "
        f"{rate / 1e9:.0f} GFLOP/s ({s_layer:.1f} s per layer), which gives "
        f"{flops70 / rate / 3600:.1f} h; a laptop CPU sustaining 300 GFLOP/s in float32 needs "
        f"about {flops70 / 300e9 / 60:.0f} min. Disk: all {total70 / GB:.0f} GB must be present "
        f"(every shard holds some layers' V/O), but only {read70 / GB:.1f} GB are ever read."
    )


def report(data: dict) -> None:
    """Print the numbers of a run (``data`` as written by ``--json``)."""
    info, results, machine = data["checkpoint"], data["runs"], data["machine"]
    cfg, total = info["spec"]["config"], info["total_bytes"]
    small = cfg["hidden_size"] != LLAMA31_8B["hidden_size"]
    print(f"checkpoint: {'small stand-in' if small else 'Llama-3.1-8B shapes'}, {total / GB:.2f} "
          f"GB bf16, {info['n_shards']} shards, in {data['folder']}")
    print(f"machine: {machine['cpus']} CPUs (torch threads {machine['threads']}, load average "
          f"{machine['load']:.1f} at the start), {machine['available'] / GB:.1f} GB available; "
          "page cache dropped before each run")
    print(f"{'run':<14} {'peak RSS GB':>12} {'baseline GB':>12} {'load s':>8} {'work s':>8}")
    for r in results:
        work = r.get("scan_seconds", r.get("forward_seconds", 0.0))
        print(f"{r['path']:<14} {r['peak_rss_bytes'] / GB:>12.2f} "
              f"{r['baseline_rss_bytes'] / GB:>12.2f} {r['load_seconds']:>8.2f} {work:>8.1f}")
    eager = next((r for r in results if r["path"] == "eager"), None)
    if eager:
        print("eager after from_pretrained alone: peak RSS "
              f"{eager['after_load']['peak_rss_bytes'] / GB:.2f} GB (weights memory-mapped, not "
              f"yet read); after one forward pass: {eager['peak_rss_bytes'] / GB:.2f} GB "
              f"({eager['rss_file_bytes'] / GB:.2f} GB file-backed)")
    lazy = [r for r in results if r is not eager]
    for a in lazy:
        s_layer = a["scan_seconds"] / a["n_layers"]
        print(f"{a['path']}: {a['how']}; {s_layer:.1f} s per relation per layer "
              f"({a['n_layers']} of {a['n_layers_model']} layers timed, {a['n_heads']} heads, "
              f"{a['n_pairs']} pairs, {layer_flops(cfg, a['n_pairs'] or 100) / s_layer / 1e9:.0f} "
              f"GFLOP/s); read {a['bytes_read'] / GB:.2f} GB in {a['tensors_read']} tensors")
        if eager:
            ratio = a["peak_rss_bytes"] / eager["peak_rss_bytes"]
            print(f"  peak RSS lazy/eager: {ratio:.2f} (target <= 0.25: "
                  f"{'met' if ratio <= 0.25 else 'NOT met'})")
        print(f"  70B peak estimate: {estimate_70b_peak(a, cfg)[1] / GB:.1f} GB")
    if lazy:
        print()
        print(estimate_70b(min(lazy, key=lambda r: r["peak_rss_bytes"]), cfg))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true",
                    help="a 0.7 GB stand-in config instead of Llama-3.1-8B")
    ap.add_argument("--workdir",
                    help="folder for the checkpoint (default: a folder in the temp dir)")
    ap.add_argument("--tokenizer",
                    help="copy tokenizer files from this folder (default: SmolLM2's)")
    ap.add_argument("--relation", default="country_to_capital")
    ap.add_argument("--paths", default="scan,eager",
                    help="comma-separated runs: scan (lazy load + hm.scan), eager (from_pretrained "
                         "+ one forward pass)")
    ap.add_argument("--layers", type=int, help="scan only the first N layers (timing per layer is "
                    "the same and the peak is per layer; saves time on slow machines)")
    ap.add_argument("--force-eager", action="store_true",
                    help="run eager even if memory looks short")
    ap.add_argument("--json", help="also write the numbers to this file")
    ap.add_argument("--report", metavar="JSON", help="print the numbers saved by --json and exit")
    ap.add_argument("--child", choices=["scan", "eager"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        out = (child_eager(args.workdir) if args.child == "eager"
               else child_lazy(args.workdir, args.relation, args.layers))
        print("RESULT " + json.dumps(out))
        return

    if args.report:
        report(json.loads(Path(args.report).read_text()))
        return
    name = "small" if args.small else "8b"
    cfg = SMALL if args.small else LLAMA31_8B
    folder = Path(args.workdir or Path(tempfile.gettempdir()) / f"headmaps-bench-llama31-{name}")
    info = ensure_checkpoint(folder, cfg, SHARD_BYTES[name], args.tokenizer)
    total = info["total_bytes"]

    machine = {"cpus": os.cpu_count(), "threads": _threads(), "load": os.getloadavg()[0],
               "available": mem_available()}
    results: list[dict] = []
    for path in [p.strip() for p in args.paths.split(",") if p.strip()]:
        if path == "eager":
            need = total * 1.15 + 2 * GB
            avail = mem_available()
            if avail < need and not args.force_eager:
                print(f"eager SKIPPED: it needs about {need / GB:.1f} GB and {avail / GB:.1f} GB "
                      f"is available (--force-eager to try anyway, or --small)")
                continue
            print("eager: from_pretrained + one forward pass ...", flush=True)
        else:
            print(f"lazy ({path}) scan of {args.relation} ...", flush=True)
        results.append(run_child(path, folder, args.relation, args.layers))

    data = {"checkpoint": info, "folder": str(folder), "machine": machine, "runs": results}
    print()
    report(data)
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=2))


def _threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    main()
