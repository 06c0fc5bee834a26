/*
 * redo_map: maps a file into memory, shared, for the redo log (src/ccos/store/redo-log.ts).
 *
 * Owns: `map(fd, bytes)`, which returns an ArrayBuffer over `bytes` of the file open as `fd`
 * (MAP_SHARED: what is stored into it is the file's page cache, which outlives the process), and
 * unmapping it when the ArrayBuffer is collected.
 * Must never: size, sync or close the file (the caller does), or keep a mapping an ArrayBuffer
 * still refers to.
 *
 * Why: a system call costs several microseconds in a virtual machine like the one the benchmarks
 * run on, more than its own time (the code after it runs slower); a store into a mapping costs
 * none, and survives the process being killed just as a `write` does.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <node_api.h>

static void unmap(napi_env env, void *data, void *hint) {
  (void)env;
  munmap(data, (size_t)(uintptr_t)hint);
}

static napi_value throw_errno(napi_env env, const char *what) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(errno));
  napi_throw_error(env, NULL, msg);
  return NULL;
}

static napi_value map(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2) {
    napi_throw_type_error(env, NULL, "map(fd, bytes) takes two numbers");
    return NULL;
  }
  int32_t fd;
  int64_t bytes;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_int64(env, argv[1], &bytes) != napi_ok || bytes <= 0) {
    napi_throw_type_error(env, NULL, "map(fd, bytes): fd and a positive byte count");
    return NULL;
  }
  void *at = mmap(NULL, (size_t)bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (at == MAP_FAILED) return throw_errno(env, "mmap");
  napi_value buffer;
  if (napi_create_external_arraybuffer(env, at, (size_t)bytes, unmap, (void *)(uintptr_t)bytes, &buffer) != napi_ok) {
    munmap(at, (size_t)bytes);
    napi_throw_error(env, NULL, "cannot wrap the mapping in an ArrayBuffer");
    return NULL;
  }
  return buffer;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "map", NAPI_AUTO_LENGTH, map, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "map", fn) != napi_ok) return NULL;
  return exports;
}
