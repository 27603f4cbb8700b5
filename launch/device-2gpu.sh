#!/usr/bin/env bash
# Everything issue 11 asks of a two-GPU machine (and issue 9 of four or eight), in
# one command (device tool, a multi-GPU kind; carry third_party). One rank per GPU:
#   build  the Python package, ravensp-train and ravensp-bench (CUDA, MPI, NCCL)
#   equiv  bf16 SP equivalence on the N GPUs over NCCL vs the one-GPU result
#   sp     SP Raven layer: LASP-2/LASP-1 at 64K/256K/512K tokens per GPU, 1 vs N GPUs
#   sp-latency  only its bare-op records at 256 tokens per GPU (LASP-2 vs LASP-1)
#   sp-profile  its kernel times at 256K and the NCCL time hidden under compute
#   gputests    the GPU pytest files of the kernels and of the one-GPU SP op
#   ring   ring attention fwd+bwd vs local cuDNN SDPA and torch context_parallel
#   train  hybrid-340M launcher steps over the N GPUs, 512K then 1M tokens
#   bench  ravensp-bench sweeps on 1, 2, 4, ... N GPUs (configs/bench-h100.cfg)
# Usage: launch/device-2gpu.sh [steps...]   (default: all, in that order)
# Knobs: RAVENSP_CONTEXTS (train lengths, default "524288 1048576"), RAVENSP_TRAIN_ARGS
# (extra ravensp-train options, e.g. --train.offload_checkpoints=true),
# RAVENSP_TRAIN_LIMIT, RAVENSP_BENCH_LIMIT (seconds per launcher run, per bench sweep),
# RAVENSP_DEADLINE_S.
# A 600-second call holds build + two or three steps. Four H200s (fifth session) took:
# build 75 s, train at 1M tokens 102 s (3 steps of 29 s), at 2M 280 s for 2 steps of
# 106 s, ring 43 s (equiv and sp have limits of 240 and 300 s). For eight
# GPUs plan three calls on the warm machine (the build stays in build/device2):
# "build equiv sp", then "ring train" with RAVENSP_CONTEXTS=2097152 (256K per GPU,
# the four-GPU 1M step's share), then "train" with RAVENSP_CONTEXTS=4194304 and
# RAVENSP_TRAIN_LIMIT=500 (one or two steps of ~210 s; ~122 GB per H200).
# Each step has its own time limit and log; a failed step is reported and the
# next one still runs. The device returns at most 8 files, so the logs and JSONs
# travel as $OUT/logs.tgz, with $OUT/summary.txt beside it. The build stays in build/device2 (ignored), so a
# second call on a still-warm machine reuses it.
set -uo pipefail
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-}
FINAL=${OUT:-/tmp/ravensp-out}
OUT=$(mktemp -d /tmp/ravensp-2gpu.XXXX)
mkdir -p "$FINAL"
trap 'tar -czf "$FINAL/logs.tgz" -C "$OUT" . ; cp "$OUT/summary.txt" "$FINAL/" 2>/dev/null' EXIT
export RAVENSP_BUILD=${RAVENSP_BUILD:-$PWD/build/device2}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 PYTHONUNBUFFERED=1
export RAVENSP_SKIP_APT=1 TORCH_CUDA_ARCH_LIST=9.0a CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-32}
source launch/env.sh
# System g++: /opt/gcc's links libstdc++ statically (see device-test.sh).
if [ -x /usr/bin/g++ ]; then export CC=/usr/bin/gcc CXX=/usr/bin/g++ CUDAHOSTCXX=/usr/bin/g++; fi
steps=("$@"); [ ${#steps[@]} -gt 0 ] || steps=(build equiv sp ring train bench)
# Every GPU of the machine is one rank (issue 11: 2; issue 9: 4 or 8); RAVENSP_NP
# takes fewer.
NG=${RAVENSP_NP:-$(nvidia-smi -L | wc -l)}
MPI=(mpirun -np "$NG" --oversubscribe --allow-run-as-root --bind-to none -x NCCL_NVLS_ENABLE
     -x TORCH_SYMM_MEM_DISABLE_MULTICAST -x NVSHMEM_DISABLE_NVLS -x PYTHONUNBUFFERED -x OMP_NUM_THREADS=4
     -x PYTORCH_CUDA_ALLOC_CONF)
T0=$(date +%s)
log() { echo "device-2gpu [$(( $(date +%s) - T0 )) s] $*" | tee -a "$OUT/summary.txt"; }
step() {  # step NAME LIMIT_S CMD...: runs CMD with a time limit, logs to $OUT/NAME.log
  local name=$1 limit=$2; shift 2
  # The device kills a command at its limit, logs and all: stop each step in time
  # for the logs to be packed (RAVENSP_DEADLINE_S after the start, default 570).
  local left=$(( T0 + ${RAVENSP_DEADLINE_S:-570} - $(date +%s) ))
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -le 5 ]; then log "$name: skipped, no time left"; return 0; fi
  log "$name: start (limit $limit s)"
  timeout -k 10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  log "$name: rc=$rc"; tail -5 "$OUT/$name.log" | sed "s/^/  $name| /" | tee -a "$OUT/summary.txt"
  return 0
}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nvidia-smi topo -m
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'nccl', torch.cuda.nccl.version())"
} > "$OUT/machine.txt" 2>&1
log "$NG GPU(s): $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"

for s in "${steps[@]}"; do
  case $s in
  build)
    RAVENSP_CMAKE_ARGS="-Ccmake.define.RAVENSP_WITH_TESTS=OFF" step build 420 bash launch/setup.sh
    grep -m5 -i "error" "$OUT/build.log" | tee -a "$OUT/summary.txt" ;;
  equiv)
    step equiv 240 "${MPI[@]}" "$PY" tests/python/mpi/sp_bf16_worker.py ;;
  sp)
    mkdir -p "$OUT/bench"
    step sp 300 "${MPI[@]}" "$PY" -m ravensp.bench.sp_gsa --out "$OUT/bench/sp_gsa.json" ;;
  sp-latency)  # only the bare-op latency records (256 tokens per GPU)
    step sp-latency 120 "${MPI[@]}" "$PY" -m ravensp.bench.sp_gsa --tokens ;;
  sp-profile)  # kernel times and how much of the NCCL time runs alongside compute
    step sp-profile 150 "${MPI[@]}" "$PY" -m ravensp.bench.sp_gsa --tokens 262144 --profile ;;
  gputests)  # the CUDA kernels' and the one-GPU SP tests (rank 0's GPU)
    step gputests 200 "$PY" -m pytest -q -p no:cacheprovider tests/python/test_gsa_cuda.py \
      tests/python/test_sp_gsa_cuda.py ;;
  ring)
    mkdir -p "$OUT/bench"; cp docs/benchmarks/ring_attention.json "$OUT/bench/ring_attention.json"
    step ring 240 "${MPI[@]}" "$PY" -m ravensp.bench.ring_attention --out "$OUT/bench/ring_attention.json" ;;
  train)
    head -c 4000000 /dev/urandom > /tmp/bytes.bin
    # At 1M tokens the allocator's fragmentation decides whether a step fits.
    export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
    for T in ${RAVENSP_CONTEXTS:-524288 1048576}; do
      step "train-$T" "${RAVENSP_TRAIN_LIMIT:-150}" "${MPI[@]}" "$RAVENSP_BUILD/bin/ravensp-train" --config configs/hybrid-340m.cfg \
        --data.kind=text --data.path=/tmp/bytes.bin --data.seq_len="$T" --data.micro_batch=1 \
        --train.grad_accum=1 --train.steps=3 --train.warmup_steps=1 --parallel.sp_size="$NG" \
        --parallel.layout=zigzag --parallel.exchange=lasp2 --output.dir=/tmp/hybrid-$T \
        --output.resume=none --output.save_final=false --output.progress=off --output.json_stdout=true \
        ${RAVENSP_TRAIN_ARGS:-}
    done ;;
  bench)
    mkdir -p "$OUT/bench"
    # Device time is short: 2 timed repeats after 1 warm-up, and one GPU stops at
    # 512K tokens (the quadratic workloads take ~20 s a call at 1M on one GPU).
    for n in 1 2 4 8; do
      [ "$n" -le "$NG" ] || break
      step "bench-$n" "${RAVENSP_BENCH_LIMIT:-240}" mpirun -np $n --oversubscribe --allow-run-as-root --bind-to none \
        -x NCCL_NVLS_ENABLE "$RAVENSP_BUILD/bin/ravensp-bench" --config configs/bench-h100.cfg \
        --repeats=2 --warmup=1 --seq_max=$(( n == 1 ? 524288 : 1048576 * n / 2 )) \
        --json "$OUT/bench/gpu$n.json" --csv "$OUT/bench/gpu$n.csv"
    done ;;
  *) log "unknown step $s (build equiv sp sp-latency sp-profile gputests ring train bench)" ;;
  esac
done
log "done"
