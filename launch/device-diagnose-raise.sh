#!/usr/bin/env bash
# Native backtrace of an argument error raised through torch.ops.ravensp (seen to
# crash the process on the GPU machine). Needs a built tree (device-test.sh).
set -u
OUT=${OUT:-/tmp/ravensp-out}
cat > /tmp/raise.py <<'PY'
import torch, ravensp
x = torch.randn(1, 4, 1, 2)
try:
    torch.ops.ravensp.gsa_chunk_fwd(x, x, x, x, x, 1.0, None, None, None, 0)
except RuntimeError as e:
    print("raised as expected:", str(e)[:120])
PY
python3 /tmp/raise.py > "$OUT/raise.txt" 2>&1; echo "rc=$?" >> "$OUT/raise.txt"
if grep -q "rc=0" "$OUT/raise.txt"; then exit 0; fi
cuda-gdb -batch -ex run -ex bt -ex "info sharedlibrary" --args python3 /tmp/raise.py > "$OUT/raise_gdb.txt" 2>&1
ldd "$(python3 -c 'import ravensp, os; print(os.path.dirname(ravensp.__file__))')"/_C*.so >> "$OUT/raise_gdb.txt" 2>&1
