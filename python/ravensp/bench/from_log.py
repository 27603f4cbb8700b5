"""Recovers a ravensp-bench document from the driver's progress lines, for a
sweep that was stopped before it wrote its files (runs since the per-point
rewrite keep their JSON; this is for the logs of earlier ones). Only what the
progress line carries is filled in; every other field is null, and the meta
says the document was recovered and from what.

    python -m ravensp.bench.from_log bench-2.log --like gpu2.json --out docs/benchmarks/bench_h100_gpu2.json
"""
from __future__ import annotations

import argparse
import json
import re

# Mirrors the fprintf in csrc/bench/driver.cpp's run().
LINE = re.compile(r"ravensp-bench: (?P<what>\w+) T=(?P<T>\d+) P=(?P<P>\d+): (?P<status>\w+) "
                  r"(?P<ms>[\d.]+) ms, (?P<tps>[\d.]+) tokens/s/rank, exposed comm (?P<comm>[\d.]+) ms, "
                  r"peak (?P<gb>[\d.]+) GB")
# Workloads whose exposed communication is the SP time minus a local baseline
# (driver.cpp); the others count host time inside collectives.
BASELINE_DIFFERENCE = {"sp_gsa_lasp2", "sp_gsa_lasp1", "ring_attention"}


def records_from_log(lines, layout="zigzag", dtype="bf16", device="cuda", repeats=None, warmup=None):
    out = []
    for line in lines:
        m = LINE.search(line)
        if not m:
            continue
        T, P = int(m["T"]), int(m["P"])
        ok = m["status"] == "ok"
        ms, comm = float(m["ms"]), float(m["comm"])
        method = "baseline_difference" if m["what"] in BASELINE_DIFFERENCE else "host_time_in_collectives"
        out.append(dict(
            schema_version=1, what=m["what"], status=m["status"], error=None if ok else m["status"],
            world_size=P, seq_len=T, tokens_per_rank=T // P, batch=1, layout=layout, dtype=dtype,
            device=device, repeats=repeats, warmup=warmup, step_ms=ms if ok else 0, step_ms_min=None,
            step_ms_max=None,
            local_ms=(ms - comm) if ok and method == "baseline_difference" else None,
            exposed_comm_ms=comm, exposed_comm_method=method if ok else "", comm_host_ms=None,
            comm_share=(comm / ms) if ok and ms > 0 else 0, tokens_per_s_per_rank=float(m["tps"]),
            flops_per_rank=None, tflops_per_rank=None, peak_mem_gb=float(m["gb"]),
            mem_kind="cuda_peak_allocated" if device == "cuda" else "cpu_peak_rss"))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log")
    ap.add_argument("--like", help="a ravensp-bench JSON of the same build and machine, for the meta")
    ap.add_argument("--note", default="", help="what stopped the run")
    ap.add_argument("--repeats", type=int)
    ap.add_argument("--warmup", type=int)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    with open(a.log) as f:
        recs = records_from_log(f, repeats=a.repeats, warmup=a.warmup)
    if not recs:
        raise SystemExit(f"{a.log}: no ravensp-bench progress lines found")
    meta = {}
    if a.like:
        with open(a.like) as f:
            meta = json.load(f)["meta"]
    meta.update(recovered_from_log=a.log, recovered_note=a.note or None,
                meta_world_size=recs[0]["world_size"])
    with open(a.out, "w") as f:
        json.dump(dict(schema="ravensp-bench", schema_version=1, meta=meta, records=recs), f, indent=1)
    print(f"{a.out}: {len(recs)} records")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
