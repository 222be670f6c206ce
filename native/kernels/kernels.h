// Shared argument helpers of the kernels addon: each kernel file registers its functions through
// register_*(env, exports), and reads typed-array arguments with these checks, so a bad call throws a JS error
// instead of reading out of bounds.
#ifndef SEEDSCOPE_KERNELS_H
#define SEEDSCOPE_KERNELS_H
#include <node_api.h>
#include <stddef.h>
#include <stdint.h>

// Functions compiled for AVX-512 beside the portable ones (callers check __builtin_cpu_supports("avx512f")).
#if defined(__x86_64__) && defined(__GNUC__)
#define HAVE_AVX512 1
#include <immintrin.h>
#define AVX512 __attribute__((target("avx512f")))
#endif

// The data pointer and element count of a typed array of the given type; 0 (with a JS TypeError thrown) otherwise.
int typed_arg(napi_env env, napi_value value, napi_typedarray_type type, const char* name, void** data, size_t* length);
// An integer in [0, 2^53); 0 (with a JS RangeError thrown) otherwise.
int int_arg(napi_env env, napi_value value, const char* name, int64_t* out);
// A boolean; 0 (with a JS TypeError naming it) otherwise.
int bool_arg(napi_env env, napi_value value, const char* name, bool* out);
// Throws a RangeError with the formatted message and returns 0.
int range_error(napi_env env, const char* format, ...);
// Row pointers of `rows` blobs of `tokens` values, `width` bytes each (2: float16, 4: float32), at byte offsets[i] of
// `bytes` (malloc'd; the caller frees). NULL, with a JS error thrown, for another width, a blob past the buffer
// (named "<what> <i>"), or no memory.
const unsigned char** blob_starts(napi_env env, unsigned char* bytes, size_t bytes_len, const double* offsets, size_t rows,
                                  int64_t width, int64_t tokens, const char* what);
// Reads exactly `count` arguments into argv; 0 (with a TypeError naming `usage`) otherwise.
int get_args(napi_env env, napi_callback_info info, size_t count, napi_value* argv, const char* usage);

// Threads for the kernels' loops (setThreads from JavaScript; process-wide, 1 until set).
enum { MAX_THREADS = 64 };
extern int kernel_threads;
// How many threads `work` items deserve: kernel_threads, fewer when a thread would get under `min_per_thread`.
int threads_for(int64_t work, int64_t min_per_thread);
// Runs fn(job k) for k < count, where job k is at (char*)jobs + k·size: job 0 on the calling thread, the others on
// threads of their own (a thread that cannot be started runs its job on the calling thread afterwards).
void run_jobs(void* (*fn)(void*), void* jobs, size_t size, int count);
// Another way to run jobs in parallel (onnxruntime's pool, for seedscope's operators in ort.c): run(self, fn, jobs,
// size, count) runs fn on each job, in any order, and returns when all are done; `threads` is how many jobs to
// split work into per step.
typedef struct JobRunner {
  void (*run)(const struct JobRunner* self, void* (*fn)(void*), void* jobs, size_t size, int count);
  void* context;
  int threads;
} JobRunner;
// out[m×n] = A[m×k]·Bᵀ, B given as [n×k], float32 rows, on the AMX tiles at float32 accuracy (amx.c); 0 where AMX
// cannot run here (amx_usable says so), 1 when done.
int amx_usable(void);
int amx_matmul(const float* a, const float* b, int64_t m, int64_t n, int64_t k, float* out, const JobRunner* runner);

napi_status define_function(napi_env env, napi_value exports, const char* name, napi_callback callback);

napi_status register_correlate(napi_env env, napi_value exports);
napi_status register_extract(napi_env env, napi_value exports);
napi_status register_mapping(napi_env env, napi_value exports);
napi_status register_amx(napi_env env, napi_value exports);
napi_status register_ort(napi_env env, napi_value exports);
napi_status register_attention(napi_env env, napi_value exports);
#endif
