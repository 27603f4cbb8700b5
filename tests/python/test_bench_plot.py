"""ravensp-bench's files and plots: the documented record schema (fields, types,
version) on a file the driver writes under mpirun with 2 CPU ranks (and the same
records rebuilt from its progress lines by from_log.py), the scaling
model's calibration against the one-GPU JSONs it quotes and its multi-GPU checks
against the committed runs, and plot.py producing non-empty PNGs from a sample
document."""
import json
import os
import shutil
import subprocess

import importlib.util

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# plot.py by path: it needs only matplotlib, not the native extension the package imports.
_spec = importlib.util.spec_from_file_location("ravensp_bench_plot",
                                               os.path.join(ROOT, "python", "ravensp", "bench", "plot.py"))
plot = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plot)
GPU_DIR = os.path.join(ROOT, "docs", "benchmarks")
_spec = importlib.util.spec_from_file_location("ravensp_bench_from_log",
                                               os.path.join(ROOT, "python", "ravensp", "bench", "from_log.py"))
from_log = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(from_log)

# docs/benchmarks.md "ravensp-bench record schema": name -> allowed Python types.
NUM = (int, float)
SCHEMA = {
    "schema_version": (int,), "what": (str,), "status": (str,), "error": (str,), "world_size": (int,),
    "seq_len": (int,), "tokens_per_rank": (int,), "batch": (int,), "layout": (str,), "dtype": (str,),
    "device": (str,), "repeats": (int,), "warmup": (int,), "step_ms": NUM, "step_ms_min": NUM,
    "step_ms_max": NUM, "local_ms": NUM + (type(None),), "exposed_comm_ms": NUM,
    "exposed_comm_method": (str,), "comm_host_ms": NUM, "comm_share": NUM,
    "tokens_per_s_per_rank": NUM, "flops_per_rank": NUM, "tflops_per_rank": NUM,
    "peak_mem_gb": NUM, "mem_kind": (str,),
}
META = ["machine", "hostname", "date", "ravensp_version", "torch_version", "cuda_version",
        "nccl_version", "backend", "meta_world_size", "threads", "command"]


def check_document(doc):
    assert doc["schema"] == "ravensp-bench" and doc["schema_version"] == 1
    assert set(META) <= set(doc["meta"]), set(META) - set(doc["meta"])
    assert doc["records"], "no records"
    for r in doc["records"]:
        assert list(r) == list(SCHEMA), list(r)
        for k, types in SCHEMA.items():
            assert isinstance(r[k], types) and not isinstance(r[k], bool), (k, r[k])
        assert r["schema_version"] == doc["schema_version"]


def _bench_bin():
    for c in [os.environ.get("RAVENSP_BENCH_BIN", ""),
              os.path.join(os.environ.get("RAVENSP_BUILD", ""), "bin", "ravensp-bench"),
              os.path.join(ROOT, "build", "py", "bin", "ravensp-bench"),
              shutil.which("ravensp-bench") or ""]:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    pytest.skip("ravensp-bench not built (set RAVENSP_BENCH_BIN)")


def sample_document():
    recs = []
    for P in (1, 2):
        for T in (1024, 2048):
            r = {k: 0 for k in SCHEMA}
            r.update(schema_version=1, what="sp_gsa_lasp2", status="ok", error="", world_size=P, seq_len=T,
                     tokens_per_rank=T // P, batch=1, layout="zigzag", dtype="fp32", device="cpu",
                     repeats=3, warmup=1, step_ms=T / 100 / P * (1.2 if P > 1 else 1), local_ms=None,
                     exposed_comm_method="baseline_difference", comm_share=0.1 * (P - 1),
                     tokens_per_s_per_rank=1e5, peak_mem_gb=0.1 * T / 1024, mem_kind="cpu_peak_rss")
            recs.append(r)
    return {"schema": "ravensp-bench", "schema_version": 1, "meta": {k: "" for k in META}, "records": recs}


def test_sample_document_matches_schema_and_checker_can_fail():
    doc = sample_document()
    check_document(doc)
    doc["records"][0]["step_ms"] = "12"
    with pytest.raises(AssertionError):
        check_document(doc)


def test_driver_two_ranks_writes_valid_json_and_csv(tmp_path):
    exe = _bench_bin()
    mpirun = shutil.which("mpirun") or pytest.skip("no mpirun")
    js, cs = tmp_path / "b.json", tmp_path / "b.csv"
    cmd = [mpirun, "-n", "2", "--oversubscribe", "--allow-run-as-root", "-x", "OMP_NUM_THREADS=1", exe,
           "--what=sp_gsa_lasp2,ring_attention", "--seq=256,512", "--repeats=1", "--warmup=0",
           "--dtype=fp32", "--device=cpu", f"--model_config={ROOT}/configs/tiny-mqar.cfg",
           f"--json={js}", f"--csv={cs}"]
    run = subprocess.run(cmd, check=True, timeout=600, cwd=tmp_path, capture_output=True, text=True)
    doc = json.loads(js.read_text())
    check_document(doc)
    # from_log rebuilds the same points from the progress lines of a run that died
    # before writing its files (fields the line carries: equal to print precision).
    recovered = from_log.records_from_log(run.stderr.splitlines(), layout="zigzag", dtype="fp32",
                                          device="cpu")
    assert len(recovered) == len(doc["records"])
    for got, want in zip(recovered, doc["records"]):
        assert set(got) == set(SCHEMA)
        for k in ("what", "status", "world_size", "seq_len", "tokens_per_rank", "exposed_comm_method"):
            assert got[k] == want[k], k
        for k in ("step_ms", "exposed_comm_ms", "peak_mem_gb"):
            assert got[k] == pytest.approx(want[k], abs=1e-3), k
        assert got["tokens_per_s_per_rank"] == pytest.approx(want["tokens_per_s_per_rank"], abs=0.5)
    assert [(r["what"], r["seq_len"], r["world_size"], r["status"]) for r in doc["records"]] == [
        ("sp_gsa_lasp2", 256, 2, "ok"), ("sp_gsa_lasp2", 512, 2, "ok"),
        ("ring_attention", 256, 2, "ok"), ("ring_attention", 512, 2, "ok")]
    lines = cs.read_text().splitlines()
    assert lines[0].split(",")[: len(SCHEMA)] == list(SCHEMA)
    assert len(lines) == 1 + len(doc["records"])


def test_predict_calibration_is_the_measured_json(tmp_path):
    exe = _bench_bin()
    out = tmp_path / "p.json"
    txt = subprocess.run([exe, "--predict", f"--predict_json={out}"], check=True, capture_output=True,
                         text=True, timeout=120).stdout
    assert "LASP-2 paper comparison" in txt
    cal = json.loads(out.read_text())["calibration"]
    sp = [r for r in json.load(open(os.path.join(GPU_DIR, "sp_gsa_h100.json")))["records"]
          if r["exchange"] == "lasp2" and r.get("gpus", 1) == 1]
    assert cal["raven_tokens"] == [r["tokens_per_gpu"] for r in sp]
    assert cal["raven_ms_local"] == pytest.approx([r["ms_fwd_bwd_without_sp"] for r in sp], rel=1e-6)
    assert cal["raven_ms_sp"] == pytest.approx([r["ms_fwd_bwd"] for r in sp], rel=1e-6)
    two = [r for r in json.load(open(os.path.join(GPU_DIR, "sp_gsa.json")))["records"]
           if r["exchange"] == "lasp2" and r.get("gpus", 1) == 2]
    assert cal["lasp2_exposed_ms_2gpu"] == pytest.approx([r["exposed_comm_ms"] for r in two], rel=1e-6)


def _measured_step_s(source, gpus, seq_len):
    """The step a --predict check quotes, from its committed file: the launcher's
    mean over the steps after the first (warm-up), or ravensp-bench's train_step."""
    path = os.path.join(GPU_DIR, source)
    if source.endswith(".jsonl"):
        steps = [json.loads(line) for line in open(path) if line.strip()]
        assert len(steps) >= 2, source
        return sum(r["step_s"] for r in steps[1:]) / (len(steps) - 1)
    (r,) = [r for r in json.load(open(path))["records"] if r["what"] == "train_step"
            and r["world_size"] == gpus and r["seq_len"] == seq_len and r["status"] == "ok"]
    return r["step_ms"] / 1e3


def test_predict_checks_are_the_committed_measurements(tmp_path):
    exe = _bench_bin()
    out = tmp_path / "p.json"
    subprocess.run([exe, "--predict", f"--predict_json={out}"], check=True, capture_output=True, timeout=120)
    checks = json.loads(out.read_text())["checks"]
    four = json.load(open(os.path.join(GPU_DIR, "sp_gsa_4gpu.json")))
    layer4 = [r["ms_fwd_bwd"] for r in four["records"] if r["exchange"] == "lasp2" and r["gpus"] == 1]
    for c in checks["steps"]:
        assert c["measured_s"] == pytest.approx(_measured_step_s(c["source"], c["gpus"], c["seq_len"]), rel=1e-6)
        if c["raven_source"] == "sp_gsa_4gpu.json":
            assert c["raven_ms_sp"] == pytest.approx(layer4, rel=1e-6)
        # From 256K tokens per GPU the step is the model's three parts (the measured
        # layer, attention at a fixed FLOP rate, the fitted rest per token) plus
        # exchanges that hide; the per-step fixed costs the model lacks (0.15-0.2 s)
        # no longer count. The launcher steps sit at 1.02-1.05 of measured, the H200
        # ones on an H100 calibration of the rest: 10% admits that machine difference
        # but not a structural slip (attention's recompute dropped puts the 2M step
        # at 0.82; attention not divided over P, above 3).
        if c["source"].endswith(".jsonl"):
            assert c["model_with_its_layer_s"] / c["measured_s"] == pytest.approx(1.0, abs=0.10), c
    weak = {(r["tokens_per_gpu"], r["exchange"]): r["weak_scaling_efficiency"]
            for r in four["records"] if r["gpus"] == 4}
    assert {(c["tokens_per_gpu"], c["exchange"]): c["measured"] for c in checks["sp_layer_weak_scaling_4gpu"]} \
        == pytest.approx(weak, abs=1e-4)
    two = json.load(open(os.path.join(GPU_DIR, "sp_gsa.json")))
    lat = {(r["gpus"], r["exchange"]): r["us_exchange_exposed"]
           for r in two["latency"] + four["latency"] if r["gpus"] > 1}
    assert {(c["gpus"], c["exchange"]): c["measured"] for c in checks["latency_exposed_us"]} == lat


def test_plot_writes_nonempty_pngs(tmp_path):
    doc = sample_document()
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps(doc))
    pred = {"schema": "ravensp-bench-predict", "schema_version": 1, "calibration": {}, "predictions": [
        dict(shape=sh, sweep=sw, scheme=sc, compute="target", gpus=P, seq_len=T, tokens_per_gpu=T // P,
             step_s=1.0 + 0.01 * P, tokens_per_s_per_gpu=T / P, efficiency=0.9)
        for sh in ("hybrid-340M-M64", "raven-340M-M64") for sc in ("lasp2_overlap", "lasp2", "lasp1", "ring")
        for P in (1, 8, 64) for sw, T in (("strong", 2097152), ("weak", 32768 * P))]}
    pj = tmp_path / "pred.json"
    pj.write_text(json.dumps(pred))
    out = tmp_path / "png"
    assert plot.main(["--bench", str(bench), "--predict", str(pj), "--gpu-dir", GPU_DIR, "--out", str(out)]) == 0
    for name in ("throughput_vs_seqlen.png", "scaling.png", "memory_vs_length.png", "comm_share.png"):
        data = (out / name).read_bytes()
        assert len(data) > 10_000 and data[:8] == b"\x89PNG\r\n\x1a\n", name


def test_plot_rejects_foreign_documents(tmp_path):
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"schema": "other", "records": []}))
    with pytest.raises(ValueError):
        plot.main(["--bench", str(p), "--out", str(tmp_path)])
