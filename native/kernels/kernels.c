// N-API module of seedscope's per-element statistics kernels (README.md): the argument helpers shared by the
// kernel files, and the module's entry point.
#include "kernels.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

int typed_arg(napi_env env, napi_value value, napi_typedarray_type type, const char* name, void** data, size_t* length) {
  static const char* const type_names[] = {"Int8Array",    "Uint8Array",   "Uint8ClampedArray", "Int16Array",
                                           "Uint16Array",  "Int32Array",   "Uint32Array",       "Float32Array",
                                           "Float64Array", "BigInt64Array", "BigUint64Array"};
  bool is_typedarray = false;
  napi_typedarray_type actual;
  if (napi_is_typedarray(env, value, &is_typedarray) != napi_ok || !is_typedarray ||
      napi_get_typedarray_info(env, value, &actual, length, data, NULL, NULL) != napi_ok || actual != type) {
    char message[128];
    snprintf(message, sizeof message, "kernels: %s must be a %s", name,
             (size_t)type < sizeof type_names / sizeof type_names[0] ? type_names[type] : "typed array");
    napi_throw_type_error(env, NULL, message);
    return 0;
  }
  return 1;
}

int int_arg(napi_env env, napi_value value, const char* name, int64_t* out) {
  double d;
  if (napi_get_value_double(env, value, &d) != napi_ok || !(d >= 0 && d < 9007199254740992.0) || d != (double)(int64_t)d) {
    return range_error(env, "kernels: %s must be a non-negative integer", name);
  }
  *out = (int64_t)d;
  return 1;
}

int bool_arg(napi_env env, napi_value value, const char* name, bool* out) {
  if (napi_get_value_bool(env, value, out) == napi_ok) return 1;
  char message[128];
  snprintf(message, sizeof message, "kernels: %s must be a boolean", name);
  napi_throw_type_error(env, NULL, message);
  return 0;
}

int range_error(napi_env env, const char* format, ...) {
  char message[256];
  va_list args;
  va_start(args, format);
  vsnprintf(message, sizeof message, format, args);
  va_end(args);
  napi_throw_range_error(env, NULL, message);
  return 0;
}

const unsigned char** blob_starts(napi_env env, unsigned char* bytes, size_t bytes_len, const double* offsets, size_t rows,
                                  int64_t width, int64_t tokens, const char* what) {
  if (width != 2 && width != 4) {
    range_error(env, "kernels: bytesPerValue must be 2 (float16) or 4 (float32), got %lld", (long long)width);
    return NULL;
  }
  const unsigned char** starts = malloc(sizeof *starts * (rows > 0 ? rows : 1));
  if (!starts) {
    napi_throw_error(env, NULL, "kernels: out of memory");
    return NULL;
  }
  for (size_t i = 0; i < rows; i++) {
    const double at = offsets[i];
    if (!(at >= 0) || at != (double)(int64_t)at || (uint64_t)at + (uint64_t)(width * tokens) > bytes_len) {
      free(starts);
      range_error(env, "kernels: %s %zu at byte %.0f runs past the %zu-byte buffer", what, i, at, bytes_len);
      return NULL;
    }
    starts[i] = bytes + (size_t)at;
  }
  return starts;
}

int get_args(napi_env env, napi_callback_info info, size_t count, napi_value* argv, const char* usage) {
  size_t argc = count;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != count) {
    char message[256];
    snprintf(message, sizeof message, "kernels: expected %s", usage);
    napi_throw_type_error(env, NULL, message);
    return 0;
  }
  return 1;
}

napi_status define_function(napi_env env, napi_value exports, const char* name, napi_callback callback) {
  napi_value fn;
  napi_status s = napi_create_function(env, name, NAPI_AUTO_LENGTH, callback, NULL, &fn);
  return s == napi_ok ? napi_set_named_property(env, exports, name, fn) : s;
}

int kernel_threads = 1;

int threads_for(int64_t work, int64_t min_per_thread) {
  int64_t threads = work / min_per_thread;
  if (threads > kernel_threads) threads = kernel_threads;
  return threads < 1 ? 1 : (int)threads;
}

void run_jobs(void* (*fn)(void*), void* jobs, size_t size, int count) {
  pthread_t ids[MAX_THREADS];
  int started[MAX_THREADS] = {0};
  for (int k = 1; k < count; k++) started[k] = pthread_create(&ids[k], NULL, fn, (char*)jobs + k * size) == 0;
  fn(jobs);
  for (int k = 1; k < count; k++) {
    if (started[k]) pthread_join(ids[k], NULL);
    else fn((char*)jobs + k * size);
  }
}

// setThreads(n): threads for later calls (process-wide; results do not depend on it).
static napi_value SetThreads(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int64_t threads;
  if (!get_args(env, info, 1, argv, "setThreads(threads)") || !int_arg(env, argv[0], "threads", &threads)) return NULL;
  if (threads < 1) {
    range_error(env, "kernels: threads must be at least 1");
    return NULL;
  }
  kernel_threads = (int)(threads < MAX_THREADS ? threads : MAX_THREADS);
  return NULL;
}

NAPI_MODULE_INIT() {  // context-aware: loadable from worker threads too
  if (define_function(env, exports, "setThreads", SetThreads) != napi_ok || register_correlate(env, exports) != napi_ok ||
      register_extract(env, exports) != napi_ok || register_mapping(env, exports) != napi_ok ||
      register_amx(env, exports) != napi_ok || register_ort(env, exports) != napi_ok ||
      register_attention(env, exports) != napi_ok) {
    return NULL;
  }
  return exports;
}
