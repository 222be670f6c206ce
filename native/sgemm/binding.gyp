# node-gyp build of the OpenBLAS sgemm addon (see README.md). Built by build.sh (`make native`), never by npm:
# .npmrc sets ignore-scripts, so there is no install hook to run it.
{
  "targets": [
    {
      "target_name": "sgemm",
      "sources": ["sgemm.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-O2", "-Wall", "-Wextra"],
      "libraries": ["-lopenblas"]
    }
  ]
}
