#!/usr/bin/env bash
# Builds build/Release/kernels.node (`make native`). Without a C toolchain it prints one line and exits 0:
# seedscope then runs the same kernels in JavaScript (src/stats/kernels.ts), which is slower, not different.
# With a toolchain present, a failed build is an error: a silent fallback would hide a large slowdown.
set -euo pipefail
cd "$(dirname "$0")"

fallback() {
  echo "native kernels: not built ($1); extract and correlate will use the slower JavaScript kernels. To build them: install a C compiler and python3, then make native"
  exit 0
}

command -v cc >/dev/null || fallback "no C compiler (cc)"
command -v python3 >/dev/null || fallback "node-gyp needs python3"
nodedir="$(node -p 'require("path").resolve(process.execPath, "..", "..")')"
[[ -f "$nodedir/include/node/node_api.h" ]] || fallback "no Node headers under $nodedir/include/node"

# `npm exec -c` puts npm's bundled node-gyp on PATH without fetching anything from the registry.
npm exec --offline -c "node-gyp rebuild --loglevel=warn --nodedir='$nodedir'" 2> >(grep -v 'Unknown user config' >&2)
node -e 'require("./build/Release/kernels.node"); console.log("native kernels: built")'
