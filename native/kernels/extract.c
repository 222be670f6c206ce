// Kernels of the extract stage (per-neuron moments, histogram, scatter to neuron-major). Registered by kernels.c.
#include "kernels.h"

napi_status register_extract(napi_env env, napi_value exports) {
  (void)env;
  (void)exports;
  return napi_ok;
}
