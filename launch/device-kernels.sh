#!/usr/bin/env bash
# The GSA kernel run on the GPU machine (device tool): build with ninja -j16,
# the GPU tests of the CUDA kernels and of the SP op on one GPU (its split
# passes), compute-sanitizer memcheck on small cases of both, then the
# FLA-side-by-side benchmark. Logs and kernels.json go to $OUT.
# RAVENSP_SP_BENCH="<tokens...>" adds the one-GPU SP Raven layer benchmark
# (sp_gsa vs the unsharded layer) at those tokens per GPU (sp_gsa_1gpu.json);
# RAVENSP_SP_PROFILE=1 prints its kernel times instead (sp_bench.log).
# Carry .fla (FLA's fla/ source and fla_autotune_h100.tgz) for the FLA columns.
# Usage: bash launch/device-kernels.sh [pytest -k expr] [bench --shapes arg]
# RAVENSP_NCU=1 adds Nsight Compute counters of one fwd+bwd at T=32K (ncu.csv, a table
# per kernel in the log);
# RAVENSP_NCU_SOURCE=<kernel regex> builds with -lineinfo and writes the stall
# samples per CUDA source line of those kernels (source_<n>.csv, top lines in the log);
# RAVENSP_NCU_COUNT=<n> profiles the first n launches that match (default 2);
# RAVENSP_NCU_M=<slots> runs both ncu cases at that M instead of 64.
# RAVENSP_BENCH_ROUTES="walk scan" adds one benchmark per chunk-state route (below), of
# the shapes in RAVENSP_ROUTE_SHAPES (default: the bench's).
set -uo pipefail
OUT=${OUT:-/tmp/ravensp-out}
mkdir -p "$OUT"
rm -f "$OUT/memcheck.log"  # appended to below
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=9.0a
# System g++: /opt/gcc's links libstdc++ statically, and every C++ exception then
# crashes the process instead of raising (see device-test.sh).
if [ -x /usr/bin/g++ ]; then export CC=/usr/bin/gcc CXX=/usr/bin/g++ CUDAHOSTCXX=/usr/bin/g++; fi
TESTS_K=${1:-}
SHAPES=${2:-all}
BUILD=build/kernels-sysgcc${RAVENSP_NCU_SOURCE:+-lineinfo}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv | tee "$OUT/machine.txt"

start=$(date +%s)
cmake -S . -B $BUILD -G Ninja -DRAVENSP_WITH_LAUNCHER=OFF -DRAVENSP_WITH_MPI=OFF \
  -DRAVENSP_WITH_TESTS=OFF -DPython_EXECUTABLE="$(which python3)" \
  -DCMAKE_CUDA_ARCHITECTURES=90a ${RAVENSP_NCU_SOURCE:+-DCMAKE_CUDA_FLAGS=-lineinfo} \
  > /tmp/build.log 2>&1 &&
  ninja -C $BUILD -j16 ravensp_C >> /tmp/build.log 2>&1
rc=$?
echo "build rc=$rc in $(( $(date +%s) - start )) s"
# The device tool brings back only a few files: the build log only when it failed.
if [ $rc -ne 0 ]; then cp /tmp/build.log "$OUT/"; grep -E "error|FAILED" -A5 /tmp/build.log | head -60; exit $rc; fi
cp $BUILD/python/_C*.so $BUILD/lib/*.so python/ravensp/
export PYTHONPATH=$PWD/python:$PWD/tests/python

start=$(date +%s)
python3 -m pytest -q -p no:cacheprovider tests/python/test_gsa_cuda.py \
  tests/python/test_sp_gsa_cuda.py ${TESTS_K:+-k "$TESTS_K"} \
  2>&1 | tee "$OUT/test.log" | tail -25
echo "tests rc=${PIPESTATUS[0]} in $(( $(date +%s) - start )) s"

start=$(date +%s)
# Both routes to the chunk-start states (the walk is picked for large shapes only).
for route in scan walk; do
RAVENSP_GSA_STATES=$route PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck --error-exitcode 7 python3 -c "
import torch, ravensp
from conftest import make_gsa_inputs
cu = torch.tensor([0, 5, 70, 100], device='cuda')
for dt in (torch.bfloat16, torch.float32):
    q, k, v, s, g, hk0, hv0 = make_gsa_inputs(1, 100, 2, 64, 128, 32, dtype=dt, states=True,
                                              n_seqs=3, device='cuda')
    o, st = ravensp.chunk_gsa(q, k, v, s, g, 1.0, (hk0, hv0), True, cu_seqlens=cu)
    (o.float().sum() + st[0].sum() + st[1].sum()).backward()
    o, st = ravensp.fused_recurrent_gsa(q, k, v, s, g, 1.0, (hk0, hv0), True, cu_seqlens=cu)
torch.cuda.synchronize(); print('memcheck case done')
" > /tmp/memcheck_$route.log 2>&1
echo "memcheck ($route) rc=$? in $(( $(date +%s) - start )) s: $(grep -E 'ERROR SUMMARY|memcheck case' /tmp/memcheck_$route.log | tr '\n' ' ')"
{ echo "=== memcheck, $route route"; cat /tmp/memcheck_$route.log; } >> "$OUT/memcheck.log"
done
# The SP op's split passes (zigzag cut at 50, documents crossing it) in their own
# run: NCCL's init probes its kernels for other architectures and clears the
# resulting API errors, which memcheck would count; only memory errors count here.
start=$(date +%s)
PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck --report-api-errors no \
  --error-exitcode 7 python3 -c "
import torch, ravensp, ravensp.distributed as rd
from conftest import make_gsa_inputs
cu = torch.tensor([0, 5, 70, 100], device='cuda')
grp = rd.init_single(torch.device('cuda'), 'zigzag')
for dt in (torch.bfloat16, torch.float32):
    q, k, v, s, g = make_gsa_inputs(1, 100, 2, 64, 128, 32, dtype=dt, device='cuda')
    rd.sp_gsa(q, k, v, s, g, grp, cu_seqlens=cu).float().sum().backward()
    q, k, v, s, g, hk0, hv0 = make_gsa_inputs(2, 100, 2, 64, 128, 32, dtype=dt, states=True,
                                              device='cuda')
    rd.sp_gsa(q, k, v, s, g, grp, initial_state=(hk0, hv0)).float().sum().backward()
torch.cuda.synchronize(); grp.destroy(); print('memcheck sp case done')
" > /tmp/memcheck_sp.log 2>&1
echo "memcheck sp rc=$? in $(( $(date +%s) - start )) s: $(grep -E 'ERROR SUMMARY|memcheck sp case' /tmp/memcheck_sp.log | tr '\n' ' ')"
{ echo "=== memcheck, SP split passes"; cat /tmp/memcheck_sp.log; } >> "$OUT/memcheck.log"

# FLA's Triton autotune results, unpacked whatever SHAPES is: a bench run later in
# the same device command (e.g. with RAVENSP_GSA_STATES forced) without them
# autotunes every FLA kernel again, which took more than the 10-minute limit.
export TRITON_CACHE_DIR=/tmp/tc
mkdir -p $TRITON_CACHE_DIR
[ -f .fla/fla_autotune_h100.tgz ] && tar -xzf .fla/fla_autotune_h100.tgz -C $TRITON_CACHE_DIR
if [ "$SHAPES" != "none" ]; then
  start=$(date +%s)
  PYTHONPATH=$PWD/.fla:$PYTHONPATH python3 -m ravensp.bench.kernels --out "$OUT/kernels.json" \
    --shapes "$SHAPES" ${PROFILE:+--profile} > "$OUT/bench.log" 2>&1
  echo "bench rc=$? in $(( $(date +%s) - start )) s"
  [ -n "${PROFILE:-}" ] && grep -A19 "^per-kernel" "$OUT/bench.log" | grep -v -- "-----" | sed -E 's/ravensp::kernels::gsa_cuda::\(anonymous namespace\):://' | cut -c1-92,150-185
  tail -22 "$OUT/bench.log"
fi

# RAVENSP_BENCH_ROUTES="walk scan" benchmarks the shapes again once per route to the
# chunk-start states (RAVENSP_GSA_STATES forced), into kernels_<route>.json, with the
# per-kernel times: the route threshold is chosen from these.
for route in ${RAVENSP_BENCH_ROUTES:-}; do
  start=$(date +%s)
  RAVENSP_GSA_STATES=$route PYTHONPATH=$PWD/.fla:$PYTHONPATH python3 -m ravensp.bench.kernels \
    --out "$OUT/kernels_$route.json" --shapes "${RAVENSP_ROUTE_SHAPES:-$SHAPES}" --profile \
    > "$OUT/bench_$route.log" 2>&1
  echo "bench ($route route) rc=$? in $(( $(date +%s) - start )) s"
  grep -E "speedup|ravensp " "$OUT/bench_$route.log" | tail -21
  grep -E "state_walk|walk_prep|local_states|combine" "$OUT/bench_$route.log" |
    sed -E 's/ravensp::kernels::gsa_cuda::\(anonymous namespace\):://' | cut -c1-40,150-185
done

if [ -n "${RAVENSP_SP_BENCH:-}" ]; then
  start=$(date +%s)
  python3 -m ravensp.bench.sp_gsa --out "$OUT/sp_gsa_1gpu.json" --tokens $RAVENSP_SP_BENCH \
    ${RAVENSP_SP_PROFILE:+--profile} > "$OUT/sp_bench.log" 2>&1
  echo "sp bench rc=$? in $(( $(date +%s) - start )) s"
  tail -12 "$OUT/sp_bench.log"
fi

# Hardware counters of one fwd+bwd at the target shape (B1 H4 K=V=256 M64 T=32K, bf16)
# for issue 4's "what limits them": time, SM and DRAM throughput, occupancy, tensor
# pipe use, registers and shared memory per kernel. Firecracker machines only (ncu
# cannot read counters on gVisor); clocks left alone (METHOD.md).
if [ -n "${RAVENSP_NCU:-}" ] && command -v ncu >/dev/null; then
  start=$(date +%s)
  # The 13 chunk kernels of the first fwd+bwd (ncu_gsa_case.py runs two); the table
  # below is the one docs/benchmarks.md quotes.
  timeout 200 ncu --clock-control none --target-processes all --kernel-name-base function \
    -k regex:'pass|bwd_|combine|local_states' -c 13 --csv \
    --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
    python3 launch/ncu_gsa_case.py > "$OUT/ncu.csv" 2> "$OUT/ncu.err"
  echo "ncu rc=$? in $(( $(date +%s) - start )) s"
  python3 - "$OUT/ncu.csv" <<'PY'
import csv, re, sys
rows = list(csv.reader(l for l in open(sys.argv[1]) if l.startswith('"')))
if not rows:
    sys.exit("ncu.csv has no rows")
col = {h: i for i, h in enumerate(rows[0])}
kernels = {}
for r in rows[1:]:
    name = re.sub(r"[<(].*", "", r[col["Kernel Name"]]).split("::")[-1]
    kernels.setdefault((int(r[col["ID"]]), name), {})[r[col["Metric Name"]]] = r[col["Metric Value"]]
keys = ["Achieved Occupancy", "Theoretical Occupancy", "Compute (SM) Throughput", "DRAM Throughput",
        "Registers Per Thread", "Block Limit Shared Mem", "Block Limit Registers",
        "Warp Cycles Per Issued Instruction"]
print("kernel | us | " + " | ".join(keys))
for (i, name), m in sorted(kernels.items()):
    us = float(m.get("Duration", "0").replace(",", "")) / 1e3
    print(f"{name} | {us:.0f} | " + " | ".join(m.get(k, "-") for k in keys))
PY
fi

if [ -n "${RAVENSP_NCU_SOURCE:-}" ] && command -v ncu >/dev/null; then
  start=$(date +%s)
  ncu --set full --import-source yes --clock-control none --kernel-name-base function \
    -k regex:"$RAVENSP_NCU_SOURCE" -c ${RAVENSP_NCU_COUNT:-2} -f -o /tmp/ncu_source python3 launch/ncu_gsa_case.py \
    > /tmp/ncu_source.log 2>&1
  echo "ncu source rc=$? in $(( $(date +%s) - start )) s"
  # The report and its CSV stay on the machine (too large to come back); the
  # top lines per source file come back in ncu_source_top.txt.
  ncu -i /tmp/ncu_source.ncu-rep --page source --csv --print-source cuda,sass > /tmp/source.csv 2>&1
  python3 - /tmp/source.csv > "$OUT/ncu_source_top.txt" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
def num(x):
    try: return float(x.replace(",", ""))
    except ValueError: return None
heads = [i for i, r in enumerate(rows) if any(h.startswith("Warp Stall Sampling (All") for h in r)]
tables = []
for n, a in enumerate(heads):
    b = heads[n + 1] if n + 1 < len(heads) else len(rows)
    hdr = rows[a]
    col = next(i for i, h in enumerate(hdr) if h.startswith("Warp Stall Sampling (All"))
    # The rows above a table name its source file and kernel.
    label = {r[0]: r[1] for r in rows[max(0, a - 4):a] if len(r) >= 2}
    body = [r for r in rows[a + 1:b] if len(r) == len(hdr) and num(r[col]) is not None]
    tables.append((sum(num(r[col]) for r in body), label, hdr, col, body))
grand = sum(t[0] for t in tables) or 1.0
for total, label, hdr, col, body in sorted(tables, key=lambda t: -t[0]):
    fn = label.get("Function Name", "?").split("(")[0].split("::")[-1]
    print(f"=== {100 * total / grand:5.1f}% of samples: {label.get('File Path', '?').split('/')[-1]} in {fn}")
    src = [r for r in body if r[1].strip()]  # CUDA source lines (SASS rows have no source)
    for r in sorted(src, key=lambda r: -num(r[col]))[:12]:
        print(f"{100 * num(r[col]) / grand:5.1f}% L{r[0]}: {r[1].strip()[:110]}")
    # Where the instructions go (issue-bound kernels): warp instructions per line.
    ic = next((i for i, h in enumerate(hdr) if h == "Instructions Executed"), None)
    if ic is not None:
        tot = sum(num(r[ic]) or 0 for r in src) or 1.0
        print(f"  --- {tot:.3g} warp instructions; most by line:")
        for r in sorted(src, key=lambda r: -(num(r[ic]) or 0))[:10]:
            print(f"  {100 * (num(r[ic]) or 0) / tot:5.1f}% L{r[0]}: {r[1].strip()[:100]}")
PY
  head -60 "$OUT/ncu_source_top.txt"
  # The kernel-level figures of the same report: throughput, memory, stall reasons.
  ncu -i /tmp/ncu_source.ncu-rep --page details --csv > /tmp/details.csv 2>&1
  python3 - /tmp/details.csv > "$OUT/ncu_source_details.txt" <<'PY'
import csv, re, sys
rows = list(csv.reader(l for l in open(sys.argv[1]) if l.startswith('"')))
col = {h: i for i, h in enumerate(rows[0])}
want = re.compile(r"Duration|Throughput|Hit Rate|Occupancy|Cycles Per Issued|Issue Slots|"
                  r"Stall|Registers|Bank Conflicts|Executed Ipc|Eligible")
for r in rows[1:]:
    if want.search(r[col["Metric Name"]]):
        name = re.sub(r"[<(].*", "", r[col["Kernel Name"]]).split("::")[-1]
        print(f"{r[col['ID']]} {name} | {r[col['Metric Name']]} | {r[col['Metric Value']]} "
              f"{r[col['Metric Unit']]}")
PY
  # Stall reasons per kernel (cycles per issued instruction spent in each).
  ncu -i /tmp/ncu_source.ncu-rep --page raw --csv > /tmp/raw.csv 2>&1
  python3 - /tmp/raw.csv >> "$OUT/ncu_source_details.txt" <<'PY'
import csv, re, sys
rows = list(csv.reader(l for l in open(sys.argv[1]) if l.startswith('"')))
hdr = rows[0]
pat = re.compile(r"smsp__average_warps?_issue_stalled_(\w+)_per_issue_active\.ratio$")
for r in rows[2:]:
    name = re.sub(r"[<(].*", "", r[hdr.index("Kernel Name")]).split("::")[-1]
    stalls = []
    for i, h in enumerate(hdr):
        m = pat.match(h)
        if m:
            try: stalls.append((float(r[i].replace(",", "")), m.group(1)))
            except ValueError: pass
    top = ", ".join(f"{k} {v:.2f}" for v, k in sorted(stalls, reverse=True)[:8])
    print(f"stalls {name}: {top}")
PY
  head -90 "$OUT/ncu_source_details.txt"
fi
