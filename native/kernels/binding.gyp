# node-gyp build of the per-element statistics kernels (see README.md). Built by build.sh (`make native`), never
# by npm: .npmrc sets ignore-scripts, so there is no install hook to run it. Pure C, no library needed.
# -ffp-contract=off: no fused multiply-add, which JavaScript never does (the kernels match it bit for bit).
# -fno-trapping-math: conditionals may become selects, so extract.c's moment loops vectorize; no value changes.
{
  "targets": [
    {
      "target_name": "kernels",
      "sources": ["kernels.c", "correlate.c", "extract.c", "mapping.c", "amx.c", "ort.c", "attention.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-O3", "-Wall", "-Wextra", "-pthread", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off"],
      "libraries": ["-pthread"]
    }
  ]
}
