# node-gyp build of the per-element statistics kernels (see README.md). Built by build.sh (`make native`), never
# by npm: .npmrc sets ignore-scripts, so there is no install hook to run it. Pure C, no library needed.
{
  "targets": [
    {
      "target_name": "kernels",
      "sources": ["kernels.c", "correlate.c", "extract.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-O3", "-Wall", "-Wextra", "-fno-math-errno", "-ffp-contract=off"]
    }
  ]
}
