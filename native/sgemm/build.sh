#!/usr/bin/env bash
# Builds build/Release/sgemm.node (`make native`). Without OpenBLAS or a C toolchain it prints one line and
# exits 0: seedscope then uses the onnxruntime or pure-JS GEMM (src/model/gemm.ts), which is slower, not wrong.
# With them present, a failed build is an error: a silent fallback would hide a large slowdown.
set -euo pipefail
cd "$(dirname "$0")"

fallback() {
  echo "native sgemm: not built ($1); the correlate stage will use a slower GEMM. To build it: apt-get install libopenblas-dev && make native"
  exit 0
}

command -v cc >/dev/null || fallback "no C compiler (cc)"
command -v python3 >/dev/null || fallback "node-gyp needs python3"
# OpenBLAS's cblas.h (the reference libblas-dev one lacks openblas_set_num_threads) and its library.
printf '#include <cblas.h>\nint main(void) { openblas_set_num_threads(1); return 0; }\n' |
  cc -x c - -lopenblas -o /dev/null 2>/dev/null || fallback "OpenBLAS headers or library not found"
# Node's own headers, from the installation that runs us (node-gyp would otherwise download them).
nodedir="$(node -p 'require("path").resolve(process.execPath, "..", "..")')"
[[ -f "$nodedir/include/node/node_api.h" ]] || fallback "no Node headers under $nodedir/include/node"

# `npm exec -c` puts npm's bundled node-gyp on PATH without fetching anything from the registry.
npm exec --offline -c "node-gyp rebuild --loglevel=warn --nodedir='$nodedir'" 2> >(grep -v 'Unknown user config' >&2)
node -e 'const s = require("./build/Release/sgemm.node"); const i = s.info(); console.log(`native sgemm: built against ${i.config} (${i.parallel})`)'
