// Read-only file mappings for the readers of activation shards: the correlate and stats stages pass over every
// shard's bytes once per pass, and reading them first copied each byte from the page cache into a buffer. A
// mapping lets the kernels read the page cache directly. Also aligned memory, for the writers' O_DIRECT staging.
//
// mapFile(fd, offset, length) returns a Uint8Array over bytes [offset, offset + length) of the open file; the
// file must not shrink while mapped (shards are written to a temporary name and renamed, never rewritten in
// place). unmapFile(view) unmaps it at once: its ArrayBuffer is detached first, so the view and every other view
// of it become empty instead of pointing at unmapped memory, and the pages leave the process then, not when V8
// collects the buffer (V8 does not see mapped bytes as memory, so it may not collect for gigabytes: a 4-seed
// correlate held 8.6 GB of unmapped-in-name shard pages before session 18). A mapping never unmapped is unmapped
// when collected.
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kernels.h"

typedef struct Mapping {
  void* base;     // page-aligned start of the mapping; NULL once unmapFile has unmapped it
  size_t length;  // bytes mapped from base
  struct Mapping *prev, *next;
} Mapping;

// The live mappings, so that unmapFile can find one by its address (worker threads map too, hence the lock). A
// mapping stays listed until V8 collects its buffer: its address range may be mapped again by then, and only the
// entry with a base can unmap it.
static Mapping* live;
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;

static void release_mapping(napi_env env, void* data, void* hint) {
  (void)env;
  (void)data;
  Mapping* m = hint;
  pthread_mutex_lock(&live_lock);
  if (m->base) munmap(m->base, m->length);
  if (m->prev) m->prev->next = m->next;
  else live = m->next;
  if (m->next) m->next->prev = m->prev;
  pthread_mutex_unlock(&live_lock);
  free(m);
}

// mapFile(fd, offset, length): Uint8Array over the file's bytes [offset, offset + length), read-only.
static napi_value MapFile(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int64_t fd, offset, length;
  if (!get_args(env, info, 3, argv, "mapFile(fd, offset, length)") || !int_arg(env, argv[0], "fd", &fd) ||
      !int_arg(env, argv[1], "offset", &offset) || !int_arg(env, argv[2], "length", &length)) {
    return NULL;
  }
  if (length == 0) {
    range_error(env, "kernels: mapFile of 0 bytes");
    return NULL;
  }
  const int64_t page = sysconf(_SC_PAGESIZE);
  const int64_t start = offset - offset % page;
  Mapping* m = malloc(sizeof *m);
  if (!m) {
    range_error(env, "kernels: out of memory");
    return NULL;
  }
  m->length = (size_t)(offset - start + length);
  m->base = mmap(NULL, m->length, PROT_READ, MAP_PRIVATE, (int)fd, (off_t)start);
  if (m->base == MAP_FAILED) {
    int error = errno;
    free(m);
    range_error(env, "kernels: mmap of %lld bytes at %lld failed: %s", (long long)length, (long long)offset, strerror(error));
    return NULL;
  }
  madvise(m->base, m->length, MADV_SEQUENTIAL);  // the kernel reads ahead further (shards are read front to back)
  napi_value buffer, view;
  if (napi_create_external_arraybuffer(env, m->base, m->length, release_mapping, m, &buffer) != napi_ok) {
    munmap(m->base, m->length);
    free(m);
    range_error(env, "kernels: cannot wrap a mapping in an ArrayBuffer");
    return NULL;
  }
  pthread_mutex_lock(&live_lock);
  m->prev = NULL, m->next = live;
  if (live) live->prev = m;
  live = m;
  pthread_mutex_unlock(&live_lock);
  if (napi_create_typedarray(env, napi_uint8_array, (size_t)length, buffer, (size_t)(offset - start), &view) != napi_ok) return NULL;
  return view;
}

// unmapFile(view): detach the mapping's ArrayBuffer, then unmap it. Its entry stays listed, without a base, until V8
// collects the buffer (release_mapping).
static napi_value UnmapFile(napi_env env, napi_callback_info info) {
  napi_value argv[1], buffer;
  bool is_typedarray = false;
  void* base = NULL;
  if (!get_args(env, info, 1, argv, "unmapFile(view)")) return NULL;
  if (napi_is_typedarray(env, argv[0], &is_typedarray) != napi_ok || !is_typedarray ||
      napi_get_typedarray_info(env, argv[0], NULL, NULL, NULL, &buffer, NULL) != napi_ok ||
      napi_get_arraybuffer_info(env, buffer, &base, NULL) != napi_ok) {
    napi_throw_type_error(env, NULL, "kernels: unmapFile expects a view returned by mapFile");
    return NULL;
  }
  if (napi_detach_arraybuffer(env, buffer) != napi_ok) {
    napi_throw_type_error(env, NULL, "kernels: unmapFile could not detach the mapping");
    return NULL;
  }
  pthread_mutex_lock(&live_lock);
  for (Mapping* m = live; m && base; m = m->next) {
    if (m->base == base) {
      munmap(m->base, m->length);
      m->base = NULL;
      break;
    }
  }
  pthread_mutex_unlock(&live_lock);
  return NULL;
}

static void release_aligned(napi_env env, void* data, void* hint) {
  (void)env;
  (void)hint;
  free(data);
}

// alignedBytes(length, alignment): a Uint8Array of `length` zeroed bytes whose address is a multiple of
// `alignment` (a power of two): the staging buffer of an O_DIRECT write (src/io/direct-write.ts), which the
// kernel accepts only from aligned memory. Freed when collected.
static napi_value AlignedBytes(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int64_t length, alignment;
  if (!get_args(env, info, 2, argv, "alignedBytes(length, alignment)") || !int_arg(env, argv[0], "length", &length) ||
      !int_arg(env, argv[1], "alignment", &alignment)) {
    return NULL;
  }
  if (length <= 0 || alignment < (int64_t)sizeof(void*) || (alignment & (alignment - 1)) != 0) {
    range_error(env, "kernels: alignedBytes(%lld, %lld) needs a positive length and a power-of-two alignment", (long long)length,
                (long long)alignment);
    return NULL;
  }
  void* data = NULL;
  if (posix_memalign(&data, (size_t)alignment, (size_t)length) != 0) {
    range_error(env, "kernels: out of memory");
    return NULL;
  }
  memset(data, 0, (size_t)length);
  napi_value buffer, view;
  if (napi_create_external_arraybuffer(env, data, (size_t)length, release_aligned, NULL, &buffer) != napi_ok) {
    free(data);
    range_error(env, "kernels: cannot wrap aligned memory in an ArrayBuffer");
    return NULL;
  }
  if (napi_create_typedarray(env, napi_uint8_array, (size_t)length, buffer, 0, &view) != napi_ok) return NULL;
  return view;
}

napi_status register_mapping(napi_env env, napi_value exports) {
  napi_status s = define_function(env, exports, "mapFile", MapFile);
  if (s == napi_ok) s = define_function(env, exports, "unmapFile", UnmapFile);
  return s == napi_ok ? define_function(env, exports, "alignedBytes", AlignedBytes) : s;
}
