#!/usr/bin/env bash
# Builds build/Release/kernels.node (`make native`). Without a C toolchain it prints one line and exits 0:
# seedscope then runs the same kernels in JavaScript (src/stats/kernels.ts), which is slower, not different.
# With a toolchain present, a failed build is an error: a silent fallback would hide a large slowdown.
set -euo pipefail
cd "$(dirname "$0")"
source ../build-addon.sh

fallback() {
  echo "native kernels: not built ($1); extract and correlate will use the slower JavaScript kernels. To build them: install a C compiler and python3, then make native"
  exit 0
}

require_toolchain
build_addon
node -e 'require("./build/Release/kernels.node"); console.log("native kernels: built")'
