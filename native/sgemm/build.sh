#!/usr/bin/env bash
# Builds build/Release/sgemm.node (`make native`). Without OpenBLAS or a C toolchain it prints one line and
# exits 0: seedscope then uses the onnxruntime or pure-JS GEMM (src/model/gemm.ts), which is slower, not wrong.
# With them present, a failed build is an error: a silent fallback would hide a large slowdown.
set -euo pipefail
cd "$(dirname "$0")"
source ../build-addon.sh

fallback() {
  echo "native sgemm: not built ($1); the correlate stage will use a slower GEMM. To build it: apt-get install libopenblas-dev && make native"
  exit 0
}

require_toolchain
# OpenBLAS's cblas.h (the reference libblas-dev one lacks openblas_set_num_threads) and its library.
printf '#include <cblas.h>\nint main(void) { openblas_set_num_threads(1); return 0; }\n' |
  cc -x c - -lopenblas -o /dev/null 2>/dev/null || fallback "OpenBLAS headers or library not found"

build_addon
node -e 'const s = require("./build/Release/sgemm.node"); const i = s.info(); console.log(`native sgemm: built against ${i.config} (${i.parallel})`)'
