// N-API module of seedscope's per-element statistics kernels (README.md): the argument helpers shared by the
// kernel files, and the module's entry point.
#include "kernels.h"

#include <stdarg.h>
#include <stdio.h>

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

int range_error(napi_env env, const char* format, ...) {
  char message[256];
  va_list args;
  va_start(args, format);
  vsnprintf(message, sizeof message, format, args);
  va_end(args);
  napi_throw_range_error(env, NULL, message);
  return 0;
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

NAPI_MODULE_INIT() {  // context-aware: loadable from worker threads too
  if (register_correlate(env, exports) != napi_ok || register_extract(env, exports) != napi_ok) return NULL;
  return exports;
}
