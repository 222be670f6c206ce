// onnxruntime sessions whose outputs go straight into the caller's buffers. onnxruntime-node hands every output
// back in a fresh buffer: onnxruntime allocates it, the binding copies it into a new zero-filled ArrayBuffer, and
// the kernel zeroes that memory page by page first. For the extraction graph of a GPT-2-small model that is
// 300 MB per batch of 4 × 512 tokens, all on the thread that feeds the model while onnxruntime's pool waits.
// Here the caller passes its own Float32Arrays, reused from batch to batch, and onnxruntime writes into them.
//
// The library is the one onnxruntime-node ships (its path comes from JavaScript), opened with dlopen; the C API
// is reached through OrtGetApiBase, as the C header does it. We do not vendor the header: the few entries we call
// are declared below by their index in the OrtApi table of function pointers, which onnxruntime only ever
// extends at its end, so an index holds for every later version (these are all present by API version 17).
//
// Every session also knows seedscope's operators (domain `seedscope`): CausalAttention and CausalAttentionQKV
// (attention.c) and AmxMatMul (amx.c), which src/model/graph.ts uses in place of ONNX Attention and MatMul where
// they run here.
#include "kernels.h"

#include <dlfcn.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"

#include <unistd.h>

static int pool_cores(void) {
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  return cores < 1 ? 1 : cores > 16 ? 16 : (int)cores;
}

typedef struct OrtStatus OrtStatus;
typedef struct OrtEnv OrtEnv;
typedef struct OrtSession OrtSession;
typedef struct OrtSessionOptions OrtSessionOptions;
typedef struct OrtMemoryInfo OrtMemoryInfo;
typedef struct OrtValue OrtValue;
typedef struct OrtAllocator OrtAllocator;
typedef struct OrtTensorTypeAndShapeInfo OrtShape;
typedef struct OrtCustomOpDomain OrtCustomOpDomain;
typedef struct OrtKernelInfo OrtKernelInfo;
typedef struct OrtKernelContext OrtKernelContext;

// Enum values from onnxruntime_c_api.h.
enum { ORT_LOGGING_LEVEL_ERROR = 3, ORT_SEQUENTIAL = 0, ORT_ENABLE_ALL = 99, ORT_DEVICE_ALLOCATOR = 0, ORT_MEM_TYPE_DEFAULT = 0 };
enum { ELEMENT_FLOAT = 1, ELEMENT_INT64 = 7 };  // ONNXTensorElementDataType
enum { ORT_FAIL = 1, ORT_INVALID_ARGUMENT = 2 };  // OrtErrorCode
enum { API_VERSION = 17 };                      // the oldest table that has every entry below

// The entries used, with their index in struct OrtApi.
static struct {
  OrtStatus* (*CreateStatus)(int code, const char* message);                                                    // 0
  const char* (*GetErrorMessage)(const OrtStatus* status);                                                      // 2
  OrtStatus* (*CreateEnv)(int level, const char* log_id, OrtEnv** out);                                         // 3
  OrtStatus* (*CreateSessionFromArray)(const OrtEnv* env, const void* model, size_t length,
                                       const OrtSessionOptions* options, OrtSession** out);                    // 8
  OrtStatus* (*Run)(OrtSession* session, const void* run_options, const char* const* input_names,
                    const OrtValue* const* inputs, size_t input_count, const char* const* output_names,
                    size_t output_count, OrtValue** outputs);                                                  // 9
  OrtStatus* (*CreateSessionOptions)(OrtSessionOptions** out);                                                  // 10
  OrtStatus* (*SetSessionExecutionMode)(OrtSessionOptions* options, int mode);                                  // 13
  OrtStatus* (*EnableProfiling)(OrtSessionOptions* options, const char* file_prefix);                          // 14
  OrtStatus* (*SetSessionLogSeverityLevel)(OrtSessionOptions* options, int level);                              // 22
  OrtStatus* (*SetSessionGraphOptimizationLevel)(OrtSessionOptions* options, int level);                        // 23
  OrtStatus* (*SetIntraOpNumThreads)(OrtSessionOptions* options, int threads);                                  // 24
  OrtStatus* (*SetInterOpNumThreads)(OrtSessionOptions* options, int threads);                                  // 25
  OrtStatus* (*CreateCustomOpDomain)(const char* domain, OrtCustomOpDomain** out);                              // 26
  OrtStatus* (*CustomOpDomain_Add)(OrtCustomOpDomain* domain, const void* op);                                  // 27
  OrtStatus* (*AddCustomOpDomain)(OrtSessionOptions* options, OrtCustomOpDomain* domain);                       // 28
  OrtStatus* (*SessionGetOutputCount)(const OrtSession* session, size_t* out);                                  // 31
  OrtStatus* (*SessionGetOutputName)(const OrtSession* session, size_t index, OrtAllocator* allocator, char** out); // 37
  OrtStatus* (*CreateTensorWithDataAsOrtValue)(const OrtMemoryInfo* info, void* data, size_t bytes, const int64_t* shape,
                                               size_t rank, int element_type, OrtValue** out);                  // 49
  OrtStatus* (*GetTensorMutableData)(OrtValue* value, void** out);                                              // 51
  OrtStatus* (*GetTensorElementType)(const OrtShape* shape, int* out);                                          // 60
  OrtStatus* (*GetDimensionsCount)(const OrtShape* shape, size_t* out);                                         // 61
  OrtStatus* (*GetDimensions)(const OrtShape* shape, int64_t* dims, size_t rank);                               // 62
  OrtStatus* (*GetTensorTypeAndShape)(const OrtValue* value, OrtShape** out);                                   // 65
  OrtStatus* (*CreateCpuMemoryInfo)(int allocator, int mem_type, OrtMemoryInfo** out);                          // 69
  OrtStatus* (*AllocatorFree)(OrtAllocator* allocator, void* p);                                                // 76
  OrtStatus* (*GetAllocatorWithDefaultOptions)(OrtAllocator** out);                                             // 78
  OrtStatus* (*KernelInfoGetAttribute_float)(const OrtKernelInfo* info, const char* name, float* out);          // 85
  OrtStatus* (*KernelInfoGetAttribute_int64)(const OrtKernelInfo* info, const char* name, int64_t* out);        // 86
  OrtStatus* (*KernelContext_GetInput)(const OrtKernelContext* context, size_t index, const OrtValue** out);    // 90
  OrtStatus* (*KernelContext_GetOutput)(OrtKernelContext* context, size_t index, const int64_t* dims, size_t rank,
                                        OrtValue** out);                                                        // 91
  void (*ReleaseStatus)(OrtStatus* status);                                                                     // 93
  void (*ReleaseSession)(OrtSession* session);                                                                  // 95
  void (*ReleaseValue)(OrtValue* value);                                                                        // 96
  void (*ReleaseShape)(OrtShape* shape);                                       // 99, ReleaseTensorTypeAndShapeInfo
  void (*ReleaseSessionOptions)(OrtSessionOptions* options);                                                    // 100
  OrtStatus* (*AddSessionConfigEntry)(OrtSessionOptions* options, const char* key, const char* value);          // 130
  OrtStatus* (*KernelContext_ParallelFor)(const OrtKernelContext* context, void (*fn)(void* data, size_t i), size_t total,
                                          size_t batches, void* data);                                          // 274
} ort;

// The process-wide state, set up once by ortOpen (module instances in worker threads share it).
static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static int opened;
static OrtEnv* ort_env;
static OrtMemoryInfo* cpu_memory;

static int load_api(const char* path, char* why, size_t why_len) {
  void* library = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!library) return snprintf(why, why_len, "cannot open %s: %s", path, dlerror()), 0;
  typedef struct { const void* (*GetApi)(uint32_t version); const char* (*GetVersionString)(void); } ApiBase;
  const ApiBase* (*get_base)(void) = (const ApiBase* (*)(void))dlsym(library, "OrtGetApiBase");
  if (!get_base) return snprintf(why, why_len, "%s has no OrtGetApiBase", path), 0;
  void* const* table = (void* const*)get_base()->GetApi(API_VERSION);
  if (!table) return snprintf(why, why_len, "%s does not offer C API version %d", path, API_VERSION), 0;
#define ENTRY(name, index) memcpy(&ort.name, &table[index], sizeof(void*))
  ENTRY(CreateStatus, 0);
  ENTRY(GetErrorMessage, 2);
  ENTRY(CreateEnv, 3);
  ENTRY(CreateSessionFromArray, 8);
  ENTRY(Run, 9);
  ENTRY(CreateSessionOptions, 10);
  ENTRY(SetSessionExecutionMode, 13);
  ENTRY(EnableProfiling, 14);
  ENTRY(SetSessionLogSeverityLevel, 22);
  ENTRY(SetSessionGraphOptimizationLevel, 23);
  ENTRY(SetIntraOpNumThreads, 24);
  ENTRY(SetInterOpNumThreads, 25);
  ENTRY(CreateCustomOpDomain, 26);
  ENTRY(CustomOpDomain_Add, 27);
  ENTRY(AddCustomOpDomain, 28);
  ENTRY(SessionGetOutputCount, 31);
  ENTRY(SessionGetOutputName, 37);
  ENTRY(CreateTensorWithDataAsOrtValue, 49);
  ENTRY(GetTensorMutableData, 51);
  ENTRY(GetTensorElementType, 60);
  ENTRY(GetDimensionsCount, 61);
  ENTRY(GetDimensions, 62);
  ENTRY(GetTensorTypeAndShape, 65);
  ENTRY(CreateCpuMemoryInfo, 69);
  ENTRY(AllocatorFree, 76);
  ENTRY(GetAllocatorWithDefaultOptions, 78);
  ENTRY(KernelInfoGetAttribute_float, 85);
  ENTRY(KernelInfoGetAttribute_int64, 86);
  ENTRY(KernelContext_GetInput, 90);
  ENTRY(KernelContext_GetOutput, 91);
  ENTRY(ReleaseStatus, 93);
  ENTRY(ReleaseSession, 95);
  ENTRY(ReleaseValue, 96);
  ENTRY(ReleaseShape, 99);
  ENTRY(ReleaseSessionOptions, 100);
  ENTRY(AddSessionConfigEntry, 130);
  ENTRY(KernelContext_ParallelFor, 274);
#undef ENTRY
  return 1;
}

// ---- seedscope's operators (attention.c), both with attributes num_heads (int) and scale (float) and the output
// [batch, positions, hidden = heads · d_head]:
//   CausalAttention(q, k, v), each [batch, positions, hidden];
//   CausalAttentionQKV(qkv, bias): qkv [batch, positions, q | k | v] as the QKV projection leaves it, bias [3 · hidden]
//   (added here: no separate pass over qkv to add it, none to split it).
// The OrtCustomOp struct as of version 16 (its fields are append-only too): onnxruntime reads no field past
// KernelComputeV2 from an op of that version.
typedef struct {
  uint32_t version;
  void* (*CreateKernel)(const void* op, const void* api, const OrtKernelInfo* info);
  const char* (*GetName)(const void* op);
  const char* (*GetExecutionProviderType)(const void* op);
  int (*GetInputType)(const void* op, size_t index);
  size_t (*GetInputTypeCount)(const void* op);
  int (*GetOutputType)(const void* op, size_t index);
  size_t (*GetOutputTypeCount)(const void* op);
  void (*KernelCompute)(void* kernel, OrtKernelContext* context);
  void (*KernelDestroy)(void* kernel);
  int (*GetInputCharacteristic)(const void* op, size_t index);   // 0: required
  int (*GetOutputCharacteristic)(const void* op, size_t index);
  int (*GetInputMemoryType)(const void* op, size_t index);       // 0: default (CPU)
  int (*GetVariadicInputMinArity)(const void* op);
  int (*GetVariadicInputHomogeneity)(const void* op);
  int (*GetVariadicOutputMinArity)(const void* op);
  int (*GetVariadicOutputHomogeneity)(const void* op);
  OrtStatus* (*CreateKernelV2)(const void* op, const void* api, const OrtKernelInfo* info, void** kernel);
  OrtStatus* (*KernelComputeV2)(void* kernel, OrtKernelContext* context);
} CustomOp;

typedef struct {
  int64_t heads;
  float scale;
  bool packed;  // CausalAttentionQKV
} AttentionKernel;

static const CustomOp attention_op, packed_attention_op;

static const char* attention_name(const void* op) { return op == &packed_attention_op ? "CausalAttentionQKV" : "CausalAttention"; }
static const char* cpu_provider(const void* op) { return (void)op, NULL; }
static int float_type(const void* op, size_t index) { return (void)op, (void)index, ELEMENT_FLOAT; }
static size_t attention_inputs(const void* op) { return op == &packed_attention_op ? 2 : 3; }
static size_t one(const void* op) { return (void)op, 1; }
static int zero_of_index(const void* op, size_t index) { return (void)op, (void)index, 0; }

static OrtStatus* create_attention(const void* op, const void* api, const OrtKernelInfo* info, void** kernel) {
  (void)api;
  AttentionKernel* a = malloc(sizeof *a);
  if (!a) return ort.CreateStatus(ORT_FAIL, "CausalAttention: out of memory");
  a->packed = op == &packed_attention_op;
  OrtStatus* status = ort.KernelInfoGetAttribute_int64(info, "num_heads", &a->heads);
  if (!status) status = ort.KernelInfoGetAttribute_float(info, "scale", &a->scale);
  if (!status && a->heads < 1) status = ort.CreateStatus(ORT_INVALID_ARGUMENT, "CausalAttention: num_heads must be positive");
  if (status) free(a), a = NULL;
  *kernel = a;
  return status;
}

static void destroy_attention(void* kernel) { free(kernel); }

typedef struct {
  AttentionShape shape;
  const float *q, *k, *v;
  float* out;
  bool failed;
} AttentionRun;

static void attention_item(void* data, size_t item) {
  AttentionRun* run = data;
  if (!causal_attention_item(&run->shape, run->q, run->k, run->v, run->out, (int64_t)item)) run->failed = true;
}

static OrtStatus* invalid(const char* message) { return ort.CreateStatus(ORT_INVALID_ARGUMENT, message); }

// Input `index` of operator `op`: its float32 data, rank (from min_rank to max_rank ≤ 8) and dims; else an error
// status naming it.
static OrtStatus* float_input(OrtKernelContext* context, const char* op, size_t index, size_t min_rank, size_t max_rank, size_t* rank,
                              int64_t dims[8], const float** data) {
  const OrtValue* value = NULL;
  OrtShape* shape = NULL;
  int element = 0;
  OrtStatus* status = ort.KernelContext_GetInput(context, index, &value);
  if (!status) status = ort.GetTensorTypeAndShape(value, &shape);
  if (!status) status = ort.GetTensorElementType(shape, &element);
  if (!status) status = ort.GetDimensionsCount(shape, rank);
  if (!status && (*rank < min_rank || *rank > max_rank || element != ELEMENT_FLOAT)) {
    char message[128];
    snprintf(message, sizeof message, "%s: input %zu must be float32 of rank %zu to %zu", op, index, min_rank, max_rank);
    status = invalid(message);
  }
  if (!status) status = ort.GetDimensions(shape, dims, *rank);
  if (!status) status = ort.GetTensorMutableData((OrtValue*)value, (void**)data);
  ort.ReleaseShape(shape);
  return status;
}

static OrtStatus* compute_attention(void* kernel, OrtKernelContext* context) {
  const AttentionKernel* a = kernel;
  const char* op = attention_name(a->packed ? &packed_attention_op : &attention_op);
  int64_t dims[8], other[8];
  size_t rank;
  AttentionRun run = {.failed = false};
  OrtStatus* status = float_input(context, op, 0, 3, 3, &rank, dims, &run.q);
  if (status) return status;
  int64_t hidden = a->packed ? dims[2] / 3 : dims[2];
  if (a->packed) {
    const float* bias;
    if ((status = float_input(context, op, 1, 1, 1, &rank, other, &bias))) return status;
    if (dims[2] % 3 != 0 || other[0] != dims[2]) return invalid("CausalAttentionQKV: qkv must be [batch, positions, 3 · hidden], bias [3 · hidden]");
    run.k = run.q + hidden, run.v = run.q + 2 * hidden, run.shape.bias = bias;
  } else {
    if ((status = float_input(context, op, 1, 3, 3, &rank, other, &run.k))) return status;
    if (memcmp(other, dims, 3 * sizeof dims[0]) != 0) return invalid("CausalAttention: q, k and v differ in shape");
    if ((status = float_input(context, op, 2, 3, 3, &rank, other, &run.v))) return status;
    if (memcmp(other, dims, 3 * sizeof dims[0]) != 0) return invalid("CausalAttention: q, k and v differ in shape");
    run.shape.bias = NULL;
  }
  if (hidden % a->heads != 0) return invalid("CausalAttention: hidden is not a multiple of num_heads");
  run.shape.batch = dims[0], run.shape.positions = dims[1], run.shape.heads = a->heads, run.shape.d_head = hidden / a->heads;
  run.shape.stride = dims[2], run.shape.scale = a->scale, run.shape.portable = 0;
  OrtValue* output = NULL;
  int64_t out_dims[3] = {dims[0], dims[1], hidden};
  status = ort.KernelContext_GetOutput(context, 0, out_dims, 3, &output);
  if (!status) status = ort.GetTensorMutableData(output, (void**)&run.out);
  if (status) return status;
  int64_t items = run.shape.batch * run.shape.heads;
  if (items > 0 && run.shape.positions > 0) status = ort.KernelContext_ParallelFor(context, attention_item, (size_t)items, 0, &run);
  if (!status && run.failed) status = ort.CreateStatus(ORT_FAIL, "CausalAttention: out of memory");
  return status;
}

// ---- seedscope.AmxMatMul(x, wt): x [..., k], wt [n, k] (a weight stored transposed); output [..., n] = x · wtᵀ,
// on the AMX tile units at float32 accuracy (amx.c: three bf16 parts per value, six part products), its jobs on
// onnxruntime's pool. MLAS's float32 kernels ran these shapes at 330–380 GFLOP/s on 2 cores, the tiles at 410–475.

static const char* matmul_name(const void* op) { return (void)op, "AmxMatMul"; }
static size_t two(const void* op) { return (void)op, 2; }
static OrtStatus* create_matmul(const void* op, const void* api, const OrtKernelInfo* info, void** kernel) {
  (void)op, (void)api, (void)info;
  *kernel = NULL;
  return amx_usable() ? NULL : ort.CreateStatus(ORT_FAIL, "AmxMatMul: this machine cannot run AMX (seedscope builds graphs without it there)");
}
static void destroy_nothing(void* kernel) { (void)kernel; }

typedef struct {
  void* (*fn)(void*);
  char* jobs;
  size_t size;
} PoolJobs;

static void pool_job(void* data, size_t i) {
  PoolJobs* p = data;
  p->fn(p->jobs + i * p->size);
}

static void run_on_pool(const JobRunner* self, void* (*fn)(void*), void* jobs, size_t size, int count) {
  PoolJobs p = {fn, jobs, size};
  OrtStatus* status = ort.KernelContext_ParallelFor(self->context, pool_job, (size_t)count, 0, &p);
  if (status) {  // no pool to hand the jobs to: run them here
    ort.ReleaseStatus(status);
    for (int i = 0; i < count; i++) fn((char*)jobs + (size_t)i * size);
  }
}

static OrtStatus* compute_matmul(void* kernel, OrtKernelContext* context) {
  (void)kernel;
  size_t rank, w_rank;
  int64_t dims[8], w_dims[8];
  const float *x_data, *w_data;
  float* out = NULL;
  OrtStatus* status = float_input(context, "AmxMatMul", 0, 2, 8, &rank, dims, &x_data);
  if (!status) status = float_input(context, "AmxMatMul", 1, 2, 2, &w_rank, w_dims, &w_data);
  if (!status && w_dims[1] != dims[rank - 1]) status = invalid("AmxMatMul: x's last dimension is not wt's second");
  if (status) return status;
  int64_t k = dims[rank - 1], n = w_dims[0], m = 1;
  for (size_t d = 0; d + 1 < rank; d++) m *= dims[d];
  dims[rank - 1] = n;
  OrtValue* output = NULL;
  status = ort.KernelContext_GetOutput(context, 0, dims, rank, &output);
  if (!status) status = ort.GetTensorMutableData(output, (void**)&out);
  if (status) return status;
  // More jobs than cores: the pool hands them out as threads come free.
  const JobRunner runner = {run_on_pool, context, 2 * pool_cores()};
  return amx_matmul(x_data, w_data, m, n, k, out, &runner) ? NULL : ort.CreateStatus(ORT_FAIL, "AmxMatMul: AMX is not usable here");
}

static const CustomOp matmul_op = {
    .version = 16, .GetName = matmul_name, .GetExecutionProviderType = cpu_provider, .GetInputType = float_type,
    .GetInputTypeCount = two, .GetOutputType = float_type, .GetOutputTypeCount = one, .KernelDestroy = destroy_nothing,
    .GetInputCharacteristic = zero_of_index, .GetOutputCharacteristic = zero_of_index, .GetInputMemoryType = zero_of_index,
    .CreateKernelV2 = create_matmul, .KernelComputeV2 = compute_matmul,
};

#define ATTENTION_OP                                                                                                           \
  {                                                                                                                            \
    .version = 16, .GetName = attention_name, .GetExecutionProviderType = cpu_provider, .GetInputType = float_type,           \
    .GetInputTypeCount = attention_inputs, .GetOutputType = float_type, .GetOutputTypeCount = one,                             \
    .KernelDestroy = destroy_attention, .GetInputCharacteristic = zero_of_index, .GetOutputCharacteristic = zero_of_index,     \
    .GetInputMemoryType = zero_of_index, .CreateKernelV2 = create_attention, .KernelComputeV2 = compute_attention,             \
  }
static const CustomOp attention_op = ATTENTION_OP, packed_attention_op = ATTENTION_OP;
#undef ATTENTION_OP

// The domain every session gets (made once, by ortOpen; sessions keep referring to it, so it is never released).
static OrtCustomOpDomain* seedscope_domain;

static OrtStatus* create_domain(void) {
  OrtStatus* status = ort.CreateCustomOpDomain("seedscope", &seedscope_domain);
  if (!status) status = ort.CustomOpDomain_Add(seedscope_domain, &attention_op);
  if (!status) status = ort.CustomOpDomain_Add(seedscope_domain, &matmul_op);
  return status ? status : ort.CustomOpDomain_Add(seedscope_domain, &packed_attention_op);
}

// Throws a JS Error carrying onnxruntime's message and releases the status; returns 0. A null status returns 1.
static int ok(napi_env env, OrtStatus* status, const char* doing) {
  if (!status) return 1;
  char message[1024];
  snprintf(message, sizeof message, "onnxruntime: %s: %s", doing, ort.GetErrorMessage(status));
  ort.ReleaseStatus(status);
  napi_throw_error(env, NULL, message);
  return 0;
}

static int string_arg(napi_env env, napi_value value, const char* name, char* out, size_t size) {
  size_t length;
  if (napi_get_value_string_utf8(env, value, out, size, &length) != napi_ok || length + 1 >= size) {
    return range_error(env, "ort: %s must be a string of under %zu bytes", name, size - 1);
  }
  return 1;
}

// ortOpen(libraryPath): loads the library and its C API, once per process; later calls check nothing.
static napi_value OrtOpen(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  char path[4096];
  if (!get_args(env, info, 1, argv, "ortOpen(libraryPath)") || !string_arg(env, argv[0], "libraryPath", path, sizeof path)) return NULL;
  pthread_mutex_lock(&open_lock);
  char why[4200] = "";
  OrtStatus* status = NULL;
  if (!opened && load_api(path, why, sizeof why)) {
    status = ort.CreateEnv(ORT_LOGGING_LEVEL_ERROR, "seedscope", &ort_env);
    if (!status) status = ort.CreateCpuMemoryInfo(ORT_DEVICE_ALLOCATOR, ORT_MEM_TYPE_DEFAULT, &cpu_memory);
    if (!status) status = create_domain();
    opened = !status;
  }
  pthread_mutex_unlock(&open_lock);
  if (why[0]) napi_throw_error(env, NULL, why);
  else ok(env, status, "creating its environment");
  return NULL;
}

typedef struct {
  OrtSession* session;
} Session;

static void finalize_session(napi_env env, void* data, void* hint) {
  (void)env, (void)hint;
  Session* s = data;
  if (s->session) ort.ReleaseSession(s->session);
  free(s);
}

static Session* session_arg(napi_env env, napi_value value) {
  void* data = NULL;
  if (napi_get_value_external(env, value, &data) != napi_ok || !data) {
    napi_throw_type_error(env, NULL, "ort: session must come from ortCreateSession");
    return NULL;
  }
  Session* s = data;
  if (!s->session) napi_throw_error(env, NULL, "ort: the session was released");
  return s->session ? s : NULL;
}

// ortCreateSession(model: Uint8Array, threads, config: [key, value][]) → session. Options as onnxruntime-node's
// InferenceSession.create sets them in src/model/runtime.ts: every graph optimization, sequential execution, one
// inter-op thread, `threads` intra-op threads (0: one per core), errors only, then the session config entries.
static napi_value OrtCreateSession(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  void* model;
  size_t model_len;
  int64_t threads;
  uint32_t entries;
  if (!get_args(env, info, 3, argv, "ortCreateSession(model, threads, config)") ||
      !typed_arg(env, argv[0], napi_uint8_array, "model", &model, &model_len) || !int_arg(env, argv[1], "threads", &threads)) {
    return NULL;
  }
  if (!opened) return napi_throw_error(env, NULL, "ort: call ortOpen first"), NULL;
  if (napi_get_array_length(env, argv[2], &entries) != napi_ok) return napi_throw_type_error(env, NULL, "ort: config must be an array"), NULL;
  OrtSessionOptions* options = NULL;
  if (!ok(env, ort.CreateSessionOptions(&options), "creating session options")) return NULL;
  int good = ok(env, ort.SetSessionGraphOptimizationLevel(options, ORT_ENABLE_ALL), "setting session options") &&
             ok(env, ort.SetSessionExecutionMode(options, ORT_SEQUENTIAL), "setting session options") &&
             ok(env, ort.SetIntraOpNumThreads(options, (int)threads), "setting session options") &&
             ok(env, ort.SetInterOpNumThreads(options, 1), "setting session options") &&
             ok(env, ort.SetSessionLogSeverityLevel(options, ORT_LOGGING_LEVEL_ERROR), "setting session options") &&
             ok(env, ort.AddCustomOpDomain(options, seedscope_domain), "adding seedscope's operators");
  for (uint32_t i = 0; good && i < entries; i++) {
    napi_value pair, key, value;
    char k[256], v[256];
    good = napi_get_element(env, argv[2], i, &pair) == napi_ok && napi_get_element(env, pair, 0, &key) == napi_ok &&
           napi_get_element(env, pair, 1, &value) == napi_ok && string_arg(env, key, "a config key", k, sizeof k) &&
           string_arg(env, value, "a config value", v, sizeof v) && ok(env, ort.AddSessionConfigEntry(options, k, v), k);
  }
  // SEEDSCOPE_ORT_PROFILE=<prefix>: onnxruntime's per-operator profile, written to <prefix>_<time>.json when the
  // session is released (for finding where a forward pass spends its time).
  const char* profile = getenv("SEEDSCOPE_ORT_PROFILE");
  if (good && profile && profile[0]) good = ok(env, ort.EnableProfiling(options, profile), "enabling profiling");
  OrtSession* session = NULL;
  if (good) good = ok(env, ort.CreateSessionFromArray(ort_env, model, model_len, options, &session), "loading the model");
  ort.ReleaseSessionOptions(options);
  if (!good) return NULL;
  Session* s = malloc(sizeof *s);
  napi_value result;
  if (!s) {
    ort.ReleaseSession(session);
    return napi_throw_error(env, NULL, "ort: out of memory"), NULL;
  }
  s->session = session;
  if (napi_create_external(env, s, finalize_session, NULL, &result) != napi_ok) {
    finalize_session(env, s, NULL);
    return NULL;
  }
  return result;
}

// ortRelease(session): frees the session now rather than when the garbage collector gets to it.
static napi_value OrtRelease(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv, "ortRelease(session)")) return NULL;
  Session* s = session_arg(env, argv[0]);
  if (s) ort.ReleaseSession(s->session), s->session = NULL;
  return NULL;
}

enum { MAX_TENSORS = 256, MAX_RANK = 8, NAME_BYTES = 256 };

typedef struct {
  char names[MAX_TENSORS][NAME_BYTES];
  const char* name_pointers[MAX_TENSORS];
  OrtValue* values[MAX_TENSORS];
  uint32_t count;
} Tensors;

// tensors[i] = { name, data, dims } → an OrtValue over the data, no copy: BigInt64Array or Float32Array for inputs,
// Float32Array for outputs. An output without data is left to onnxruntime to allocate. Returns 0 with a JS error
// thrown; values made so far stay in t for the caller to release.
static int tensors_arg(napi_env env, napi_value list, const char* what, int outputs, Tensors* t) {
  if (napi_get_array_length(env, list, &t->count) != napi_ok || t->count > MAX_TENSORS) {
    return range_error(env, "ort: %s must be an array of at most %d tensors", what, MAX_TENSORS);
  }
  for (uint32_t i = 0; i < t->count; i++) {
    napi_value item, name, data, dims_value;
    napi_valuetype data_type;
    napi_typedarray_type type;
    size_t length;
    void* bytes;
    uint32_t rank;
    int64_t dims[MAX_RANK], elements = 1;
    if (napi_get_element(env, list, i, &item) != napi_ok || napi_get_named_property(env, item, "name", &name) != napi_ok ||
        napi_get_named_property(env, item, "data", &data) != napi_ok || napi_typeof(env, data, &data_type) != napi_ok ||
        !string_arg(env, name, "a tensor name", t->names[i], NAME_BYTES)) {
      return 0;
    }
    t->name_pointers[i] = t->names[i];
    if (outputs && (data_type == napi_undefined || data_type == napi_null)) continue;
    bool is_typedarray = false;
    if (napi_is_typedarray(env, data, &is_typedarray) != napi_ok || !is_typedarray ||
        napi_get_typedarray_info(env, data, &type, &length, &bytes, NULL, NULL) != napi_ok ||
        !(type == napi_float32_array || (!outputs && type == napi_bigint64_array))) {
      return range_error(env, "ort: %s %s must be a %s", what, t->names[i], outputs ? "Float32Array" : "Float32Array or BigInt64Array");
    }
    if (napi_get_named_property(env, item, "dims", &dims_value) != napi_ok || napi_get_array_length(env, dims_value, &rank) != napi_ok ||
        rank > MAX_RANK) {
      return range_error(env, "ort: the dims of %s %s must be an array of at most %d numbers", what, t->names[i], MAX_RANK);
    }
    for (uint32_t d = 0; d < rank; d++) {
      napi_value dim;
      if (napi_get_element(env, dims_value, d, &dim) != napi_ok || !int_arg(env, dim, "a dimension", &dims[d])) return 0;
      elements *= dims[d];
    }
    if ((size_t)elements != length) {
      return range_error(env, "ort: %s %s holds %zu values, its dims %lld", what, t->names[i], length, (long long)elements);
    }
    const int element = type == napi_float32_array ? ELEMENT_FLOAT : ELEMENT_INT64;
    const size_t width = element == ELEMENT_FLOAT ? 4 : 8;
    if (!ok(env, ort.CreateTensorWithDataAsOrtValue(cpu_memory, bytes, length * width, dims, rank, element, &t->values[i]), t->names[i])) {
      return 0;
    }
  }
  return 1;
}

static void release_tensors(Tensors* t) {
  for (uint32_t i = 0; i < t->count && i < MAX_TENSORS; i++) ort.ReleaseValue(t->values[i]), t->values[i] = NULL;
}

// { data: Float32Array, dims: number[] } holding a copy of an output onnxruntime allocated; NULL with a JS error.
static napi_value copied_output(napi_env env, OrtValue* value, const char* name) {
  OrtShape* shape = NULL;
  int element = 0;
  size_t rank = 0;
  int64_t dims[MAX_RANK];
  void* data = NULL;
  int good = ok(env, ort.GetTensorTypeAndShape(value, &shape), name) && ok(env, ort.GetTensorElementType(shape, &element), name) &&
             ok(env, ort.GetDimensionsCount(shape, &rank), name) &&
             (rank <= MAX_RANK || range_error(env, "ort: output %s has rank %zu", name, rank)) &&
             ok(env, ort.GetDimensions(shape, dims, rank), name) && ok(env, ort.GetTensorMutableData(value, &data), name) &&
             (element == ELEMENT_FLOAT || range_error(env, "ort: output %s is not float32", name));
  ort.ReleaseShape(shape);
  if (!good) return NULL;
  size_t elements = 1;
  for (size_t d = 0; d < rank; d++) elements *= (size_t)dims[d];
  napi_value result, buffer, array, dims_array;
  void* copy;
  if (napi_create_object(env, &result) != napi_ok || napi_create_arraybuffer(env, elements * 4, &copy, &buffer) != napi_ok ||
      napi_create_typedarray(env, napi_float32_array, elements, buffer, 0, &array) != napi_ok ||
      napi_create_array_with_length(env, rank, &dims_array) != napi_ok) {
    return NULL;
  }
  if (elements) memcpy(copy, data, elements * 4);
  for (size_t d = 0; d < rank; d++) {
    napi_value dim;
    if (napi_create_double(env, (double)dims[d], &dim) != napi_ok || napi_set_element(env, dims_array, (uint32_t)d, dim) != napi_ok) return NULL;
  }
  if (napi_set_named_property(env, result, "data", array) != napi_ok || napi_set_named_property(env, result, "dims", dims_array) != napi_ok) {
    return NULL;
  }
  return result;
}

// ortRun(session, inputs, outputs) → (tensor | null)[]: runs the graph on `inputs` ({ name, data, dims }). An
// output given with data (a Float32Array of exactly its shape; onnxruntime reports a mismatch) is written there
// and answered with null; one given by name alone comes back as a fresh { data, dims }. Synchronous, like
// onnxruntime-node's run: call it from a worker thread.
static napi_value OrtRun(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv, "ortRun(session, inputs, outputs)")) return NULL;
  Session* s = session_arg(env, argv[0]);
  if (!s) return NULL;
  Tensors* in = calloc(2, sizeof *in);  // ~130 KB of names: off the stack
  if (!in) return napi_throw_error(env, NULL, "ort: out of memory"), NULL;
  Tensors* out = in + 1;
  OrtValue* given[MAX_TENSORS];
  napi_value results = NULL;
  if (tensors_arg(env, argv[1], "input", 0, in) && tensors_arg(env, argv[2], "output", 1, out)) {
    memcpy(given, out->values, sizeof given);
    if (ok(env, ort.Run(s->session, NULL, in->name_pointers, (const OrtValue* const*)in->values, in->count, out->name_pointers,
                        out->count, out->values),
           "run") &&
        napi_create_array_with_length(env, out->count, &results) == napi_ok) {
      for (uint32_t i = 0; results && i < out->count; i++) {
        napi_value item = NULL;
        if (given[i]) napi_get_null(env, &item);
        else item = copied_output(env, out->values[i], out->names[i]);
        if (!item || napi_set_element(env, results, i, item) != napi_ok) results = NULL;
      }
    }
  }
  release_tensors(in);
  release_tensors(out);
  free(in);
  return results;
}

// ortOutputNames(session) → string[], in the graph's order.
static napi_value OrtOutputNames(napi_env env, napi_callback_info info) {
  napi_value argv[1], names;
  if (!get_args(env, info, 1, argv, "ortOutputNames(session)")) return NULL;
  Session* s = session_arg(env, argv[0]);
  OrtAllocator* allocator;
  size_t count;
  if (!s || !ok(env, ort.GetAllocatorWithDefaultOptions(&allocator), "output names") ||
      !ok(env, ort.SessionGetOutputCount(s->session, &count), "output names") ||
      napi_create_array_with_length(env, count, &names) != napi_ok) {
    return NULL;
  }
  for (size_t i = 0; i < count; i++) {
    char* name;
    napi_value value;
    if (!ok(env, ort.SessionGetOutputName(s->session, i, allocator, &name), "output names")) return NULL;
    napi_status status = napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &value);
    ok(env, ort.AllocatorFree(allocator, name), "output names");
    if (status != napi_ok || napi_set_element(env, names, (uint32_t)i, value) != napi_ok) return NULL;
  }
  return names;
}

napi_status register_ort(napi_env env, napi_value exports) {
  napi_status status;
  if ((status = define_function(env, exports, "ortOpen", OrtOpen)) != napi_ok) return status;
  if ((status = define_function(env, exports, "ortCreateSession", OrtCreateSession)) != napi_ok) return status;
  if ((status = define_function(env, exports, "ortRun", OrtRun)) != napi_ok) return status;
  if ((status = define_function(env, exports, "ortOutputNames", OrtOutputNames)) != napi_ok) return status;
  return define_function(env, exports, "ortRelease", OrtRelease);
}
