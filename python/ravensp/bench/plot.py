"""PNG plots of ravensp's benchmark files: throughput vs sequence length, weak and
strong scaling, memory vs length, and the communication share. Reads ravensp-bench
JSON (measured, any ranks), ravensp-bench --predict JSON (the scaling model) and the
one-GPU JSONs in docs/benchmarks/ (kernels, ring_attention, sp_gsa). Nothing is
recomputed here: every number plotted is one of those files' fields.

    python -m ravensp.bench.plot --bench cpu1.json cpu2.json --predict predict.json \
        --gpu-dir docs/benchmarks --out docs/benchmarks
"""
from __future__ import annotations

import argparse
import json
import os
import re
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")  # files only; no display on the machines this runs on
import matplotlib.pyplot as plt  # noqa: E402

GIB = 2**30 / 1e9  # the one-GPU JSONs count GiB; the plots say GB (1e9 bytes)


def load(path):
    with open(path) as f:
        return json.load(f)


def bench_where(docs):
    """Where the ravensp-bench documents were measured, for the plot titles."""
    on_gpu = any(r.get("device") == "cuda" for d in docs for r in d.get("records", []))
    if not on_gpu:
        return "CPU ranks (tiny MQAR shapes, shared 2-core VM: noisy)"
    names = {d.get("meta", {}).get("machine", "").split(" x")[0] for d in docs}
    return f"{' / '.join(sorted(n for n in names if n)) or 'GPUs'} (hybrid-340M shapes, bf16)"


def bench_records(docs):
    """ok records of ravensp-bench documents, keyed by (what, world_size)."""
    out = defaultdict(list)
    for d in docs:
        if d.get("schema") != "ravensp-bench":
            raise ValueError(f"not a ravensp-bench document: schema={d.get('schema')!r}")
        for r in d["records"]:
            if r["status"] == "ok":
                out[(r["what"], r["world_size"])].append(r)
    for v in out.values():
        v.sort(key=lambda r: r["tokens_per_rank"])
    return out


def gpu_series(gpu_dir):
    """(label -> [(tokens per GPU, tokens/s, peak GB)]) from the GPU JSONs present."""
    s = defaultdict(list)
    # sp_gsa_4gpu.json repeats the one-GPU points on its own host: its multi-GPU
    # points only, beside sp_gsa.json's.
    for name, multi_only in (("sp_gsa.json", False), ("sp_gsa_4gpu.json", True)):
        p = os.path.join(gpu_dir, name)
        if not os.path.exists(p):
            continue
        for r in load(p)["records"]:
            if r["exchange"] != "lasp2" or (multi_only and r.get("gpus", 1) == 1):
                continue
            T, P = r["tokens_per_gpu"], r.get("gpus", 1)
            if P == 1:
                s["Raven layer, no SP"].append((T, T / (r["ms_fwd_bwd_without_sp"] / 1e3),
                                                r["peak_mem_gib_without_sp"] * GIB))
            s[f"Raven layer, LASP-2, {P} GPU{'s' if P > 1 else ''}"].append(
                (T, r["tokens_per_s_per_gpu"], r["peak_mem_gib"] * GIB))
    p = os.path.join(gpu_dir, "kernels.json")
    if os.path.exists(p):
        for r in load(p)["records"]:
            if r["impl"] in ("ravensp", "fla") and (r["B"], r["H"], r["M"]) == (1, 4, 64):
                name = "chunk_gsa M64, ravensp" if r["impl"] == "ravensp" else "chunk_gsa M64, FLA (anchor)"
                s[name].append((r["T"], r["tokens_per_s_fwdbwd"], r["peak_mem_gib_fwdbwd"] * GIB))
    p = os.path.join(gpu_dir, "ring_attention.json")
    if os.path.exists(p):
        doc = load(p)
        for r in doc["results"]:
            T = r["tokens_per_gpu"]
            s["ring attention P=1 (H16 D128)"].append((T, r["tokens_per_s_per_gpu"]["ring_p1_zigzag"], None))
            s["cuDNN SDPA (anchor, H16 D128)"].append((T, r["tokens_per_s_per_gpu"]["sdpa_cudnn"], None))
        for multi in (v for k, v in sorted(doc.items()) if k.startswith("multi_gpu")):
            # The blocks ran on different machines (2x H100, 4x H200): the label says which.
            gpu = re.search(r"\b[A-Z]\d{2,3}\b", multi.get("device", ""))
            on = f", {gpu.group(0)}" if gpu else ""
            for r in multi.get("rows", []):
                T, P, tps = r["tokens_per_gpu"], multi["gpus"], r["tokens_per_s_per_gpu"]
                s[f"ring attention P={P}{on} (H16 D128)"].append((T, tps["ring_ravensp"], None))
                if tps.get("ring_torch_cp"):
                    s[f"torch context_parallel P={P}{on} (anchor)"].append((T, tps["ring_torch_cp"], None))
    for v in s.values():
        v.sort()
    return s


LAUNCHER_FILE = re.compile(r"launcher_hybrid340m_(\d+)gpu_(\d+)([km])(?:_\w+)?\.jsonl$")


def launcher_steps(gpu_dir):
    """[(GPUs, total tokens, seconds)] of the hybrid-340M launcher runs in gpu_dir
    (launcher_hybrid340m_<P>gpu_<tokens>[_<note>].jsonl, one line per step): the
    mean of the steps after the first, which includes the warm-up."""
    out = []
    for name in sorted(os.listdir(gpu_dir)):
        m = LAUNCHER_FILE.match(name)
        if not m:
            continue
        with open(os.path.join(gpu_dir, name)) as f:
            steps = [json.loads(line)["step_s"] for line in f if line.strip()][1:]
        if steps:
            T = int(m.group(2)) * (1024 if m.group(3) == "k" else 2**20)
            out.append((int(m.group(1)), T, sum(steps) / len(steps)))
    return out


def _log_axes(ax, xlabel, ylabel, title):
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)


def _k(x):
    if x < 1024:
        return f"{x:g}"
    return f"{x / 1024:g}K" if x < 2**20 else f"{x / 2**20:g}M"


def _tick_tokens(ax, xs):
    xs = sorted(set(xs))
    ax.set_xticks(xs)
    ax.set_xticklabels([_k(int(x)) for x in xs], rotation=45, fontsize=7)
    ax.minorticks_off()


def _gpu_panel(ax, gpu, column, ylabel, title):
    """One line per GPU series (anchors dashed): tokens per GPU against `column` of
    its (tokens, tokens/s, peak GB) points, skipping points without it."""
    xs = []
    ax.set_prop_cycle(color=plt.cm.tab20.colors)  # a dozen series: the default ten colours repeat
    for name, pts in gpu.items():
        pts = [p for p in pts if p[column] is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[column] for p in pts], "s--" if "anchor" in name else "o-",
                    label=name)
            xs += [p[0] for p in pts]
    _log_axes(ax, "tokens per GPU", ylabel, title)
    if xs:
        _tick_tokens(ax, xs)
    ax.legend(fontsize=7)


def _bench_panel(ax, bench, field, ylabel, title):
    """One line per (workload, ranks) of the ravensp-bench records: tokens per rank
    against `field`, one rank solid, several dashed."""
    xs = []
    for (what, P), rs in sorted(bench.items()):
        x = [r["tokens_per_rank"] for r in rs]
        ax.plot(x, [r[field] for r in rs], "o-" if P == 1 else "^--", label=f"{what}, {P} rank(s)")
        xs += x
    _log_axes(ax, "tokens per rank", ylabel, title)
    if xs:
        _tick_tokens(ax, xs)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))


def plot_throughput(gpu, bench, out, where):
    fig, axes = plt.subplots(1, 2, figsize=(15, 5))
    _gpu_panel(axes[0], gpu, 1, "tokens/s per GPU (fwd+bwd)",
               "Measured on H100s and H200s, 1 to 4 GPUs (docs/benchmarks/*.json)")
    _bench_panel(axes[1], bench, "tokens_per_s_per_rank", "tokens/s per rank", f"ravensp-bench on {where}")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "throughput_vs_seqlen.png"), dpi=110)
    plt.close(fig)


def _pred(pred, **kw):
    return sorted((p for p in pred["predictions"] if all(p[k] == v for k, v in kw.items())), key=lambda p: p["gpus"])


SCHEMES = [("lasp2_overlap", "LASP-2, all-gather overlapped"), ("lasp2", "LASP-2, not overlapped (today)"),
           ("lasp1", "LASP-1"), ("ring", "ring passing for GSA")]


def plot_scaling(pred, bench, out, where, measured=()):
    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    shape = "raven-340M-M64"
    ax = axes[0]
    for sch, label in SCHEMES:
        ps = _pred(pred, shape=shape, compute="target", scheme=sch, sweep="weak")
        ax.plot([p["gpus"] for p in ps], [p["tokens_per_s_per_gpu"] for p in ps], "o-", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("GPUs")
    ax.set_ylabel("tokens/s per GPU")
    ax.set_title("Predicted weak scaling, 32K tokens/GPU\nRaven-340M (no softmax layers), M=64", fontsize=10)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax = axes[1]
    # From 4 GPUs: the fewest that hold a 2M-token hybrid step, where it was measured.
    for sh, style in (("hybrid-340M-M64", "-"), ("raven-340M-M64", "--")):
        for sch, label in SCHEMES[:3]:
            ps = [p for p in _pred(pred, shape=sh, compute="target", scheme=sch, sweep="strong")
                  if p["seq_len"] == 2097152 and p["gpus"] >= 4]
            ax.plot([p["gpus"] for p in ps], [p["step_s"] for p in ps], "o" + style, label=f"{sh}: {label}")
    ps = [p for p in _pred(pred, shape="raven-340M-M64", compute="target", scheme="lasp2_overlap", sweep="strong")
          if p["seq_len"] == 2097152 and p["gpus"] >= 4]
    if ps:
        ax.plot([p["gpus"] for p in ps], [ps[0]["step_s"] * ps[0]["gpus"] / p["gpus"] for p in ps], "k:", label="ideal (1/GPUs)")
    pts = [(P, st) for P, T, st in measured if T == 2097152]
    if pts:
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "k*", ms=12, label="hybrid-340M measured (launcher)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("GPUs")
    ax.set_ylabel("predicted step time (s)")
    ax.set_title("Predicted strong scaling, 2M tokens per sequence\n(H100 calibration; measured: 4x H200)",
                 fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6)
    ax = axes[2]
    for what in sorted({w for w, _ in bench}):
        one = {r["seq_len"]: r for r in bench.get((what, 1), [])}
        two = bench.get((what, 2), [])
        # Strong scaling: the same total sequence on 2 ranks vs 1.
        pts = [(r["seq_len"], one[r["seq_len"]]["step_ms"] / (2 * r["step_ms"])) for r in two if r["seq_len"] in one]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=what)
    ax.axhline(1.0, color="k", lw=0.8, ls=":")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("total tokens")
    ax.set_ylabel("strong-scaling efficiency, 2 ranks vs 1")
    ax.set_title(f"Measured strong scaling, 2 ranks vs 1\n{where}", fontsize=10)
    if xs_all := sorted({r["seq_len"] for rs in bench.values() for r in rs}):
        _tick_tokens(ax, xs_all)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "scaling.png"), dpi=110)
    plt.close(fig)


def plot_memory(gpu, bench, out, where):
    fig, axes = plt.subplots(1, 2, figsize=(15, 5))
    _gpu_panel(axes[0], gpu, 2, "peak GPU memory (GB)", "H100s and H200s: peak allocated per GPU during fwd+bwd")
    gpu_mem = any(r.get("mem_kind", "").startswith("cuda") for rs in bench.values() for r in rs)
    _bench_panel(axes[1], bench, "peak_mem_gb",
                 "peak allocated per GPU (GB)" if gpu_mem else "peak RSS per rank (GB)",
                 f"ravensp-bench on {where}: peak memory of the point")
    if not gpu_mem:
        axes[1].set_yscale("linear")  # 0.4-0.8 GB on CPU ranks: a log axis would show no labels
    fig.tight_layout()
    fig.savefig(os.path.join(out, "memory_vs_length.png"), dpi=110)
    plt.close(fig)


def plot_comm(pred, bench, out, where):
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    ax = axes[0]
    for sh, style in (("raven-340M-M64", "-"), ("hybrid-340M-M64", "--")):
        for sch, label in SCHEMES[:3]:  # ring passing (32-92%) would flatten the rest
            ps = [p for p in _pred(pred, shape=sh, compute="target", scheme=sch, sweep="strong")
                  if p["seq_len"] == 2097152 and p["gpus"] >= 8]
            ax.plot([p["gpus"] for p in ps], [100 * (1 - p["efficiency"]) for p in ps], "o" + style,
                    label=f"{sh}: {label}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("GPUs")
    ax.set_ylabel("exposed communication, % of step")
    ax.set_title("Predicted, 2M tokens: exposed SP exchange + gradient all-reduce\n"
                 "(ring passing for GSA, off this scale, in scaling_model.md)", fontsize=10)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    ax = axes[1]
    # One colour per workload: solid at 2 ranks, dotted at 1 rank, where the
    # "exposed" time is what the SP path adds with no peer at all.
    colours = {}
    for (what, P), rs in sorted(bench.items()):
        rs = [r for r in rs if r.get("exposed_comm_method")]
        if not rs or (P == 1 and rs[0]["exposed_comm_method"] != "baseline_difference"):
            continue
        c = colours.setdefault(what, f"C{len(colours)}")
        ax.plot([r["tokens_per_rank"] for r in rs], [100 * r["comm_share"] for r in rs],
                "o-" if P > 1 else "x:", color=c, label=f"{what}, {P} rank{'s' if P > 1 else ''}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("tokens per rank")
    ax.set_ylabel("step minus local baseline (or host time in collectives), % of step")
    ax.set_title(f"Measured on {where}\n2 ranks minus 1 rank = the exposed exchange", fontsize=10)
    if xs_all := sorted({r["tokens_per_rank"] for rs in bench.values() for r in rs}):
        _tick_tokens(ax, xs_all)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "comm_share.png"), dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", nargs="*", default=[], help="ravensp-bench JSON files")
    ap.add_argument("--predict", default=None, help="ravensp-bench --predict_json output")
    ap.add_argument("--gpu-dir", default=None, help="folder with kernels.json, ring_attention.json, sp_gsa.json")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    docs = [load(p) for p in args.bench]
    bench, where = bench_records(docs), bench_where(docs)
    gpu = gpu_series(args.gpu_dir) if args.gpu_dir else {}
    written = []
    if gpu or bench:
        plot_throughput(gpu, bench, args.out, where)
        plot_memory(gpu, bench, args.out, where)
        written += ["throughput_vs_seqlen.png", "memory_vs_length.png"]
    if args.predict:
        pred = load(args.predict)
        plot_scaling(pred, bench, args.out, where, launcher_steps(args.gpu_dir) if args.gpu_dir else ())
        plot_comm(pred, bench, args.out, where)
        written += ["scaling.png", "comm_share.png"]
    for w in written:
        print(os.path.join(args.out, w))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
