#!/usr/bin/env bash
# ravensp-train on one GPU (device tool, one call): builds the launcher with CUDA,
# trains the tiny MQAR model, then runs hybrid-340M training steps at growing
# contexts until one no longer fits. Logs and JSON records go to $OUT.
# Carry third_party (Boost.Program_options sources).
set -uo pipefail
OUT=${OUT:-/tmp/ravensp-out}
mkdir -p "$OUT"
B=${RAVENSP_BUILD:-$PWD/build/device-train}
export TORCH_CUDA_ARCH_LIST=9.0a PYTHONUNBUFFERED=1
# System g++ links libstdc++ dynamically (see device-test.sh).
if [ -x /usr/bin/g++ ]; then export CC=/usr/bin/gcc CXX=/usr/bin/g++ CUDAHOSTCXX=/usr/bin/g++; fi
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/machine.txt"
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
mpi=ON; command -v mpirun >/dev/null || mpi=OFF
start=$(date +%s)
cmake -S . -B "$B" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DRAVENSP_WITH_CUDA=ON \
  -DRAVENSP_WITH_TESTS=OFF -DRAVENSP_WITH_PYTHON=OFF -DRAVENSP_WITH_MPI=$mpi \
  -DRAVENSP_BOOST_PO_SOURCE="$PWD/third_party/boost_program_options" \
  -DPython_EXECUTABLE="$(command -v python3)" > "$OUT/cmake.log" 2>&1 || { tail -30 "$OUT/cmake.log"; exit 1; }
cmake --build "$B" --target ravensp-train -j 16 > "$OUT/build.log" 2>&1 || { grep -m20 -B2 -A8 error "$OUT/build.log"; exit 1; }
echo "device-train: built in $(( $(date +%s) - start )) s" | tee -a "$OUT/machine.txt"
bin=$B/bin/ravensp-train

# 1. The tiny MQAR model on the GPU (bf16 autocast, fp32 masters).
timeout 90 "$bin" --config configs/tiny-mqar.cfg --train.device=cuda --train.precision=bf16 \
  --output.dir="$OUT/tiny" --output.resume=none --output.progress=off 2>&1 | tail -3 | tee "$OUT/tiny.txt"

# 2. Hybrid-340M training steps (bf16, recompute per block, chunked loss over every
# token of raw bytes) at growing contexts, until one does not fit or finish in time.
head -c 2000000 /dev/urandom > "$OUT/bytes.bin"
for T in ${RAVENSP_CONTEXTS:-32768 131072 262144 524288}; do
  echo "== hybrid-340m seq_len=$T" | tee -a "$OUT/hybrid.txt"
  if ! timeout 70 "$bin" --config configs/hybrid-340m.cfg --data.kind=text --data.path="$OUT/bytes.bin" \
      --data.seq_len="$T" --data.micro_batch=1 --train.grad_accum=1 --train.steps=2 \
      --train.warmup_steps=1 --output.dir="$OUT/hybrid-$T" --output.resume=none \
      --output.save_final=false --output.progress=off --output.json_stdout=true \
      >> "$OUT/hybrid.txt" 2>&1; then
    echo "device-train: seq_len=$T did not complete (see above)" | tee -a "$OUT/hybrid.txt"
    break
  fi
  tail -1 "$OUT/hybrid.txt"
done
rm -f "$OUT/bytes.bin"
echo "device-train: total $(( $(date +%s) - start )) s"
