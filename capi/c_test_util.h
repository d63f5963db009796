/* Helpers of the C API's tests (C11, header-only, test-only): a CHECK that
 * prints file:line and exits nonzero, a short run directory, the config
 * text of a test node, and sleeping/polling.
 * Thread contract: CHECK may be used from any thread (it exits the
 * process); the rest are for the main thread. */
#ifndef SHMESH_CAPI_C_TEST_UTIL_H_
#define SHMESH_CAPI_C_TEST_UTIL_H_

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shmesh/shmesh.h"

#define CHECK(cond)                                                         \
  do {                                                                      \
    if (!(cond)) {                                                          \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      fflush(stderr);                                                       \
      _exit(1);                                                             \
    }                                                                       \
  } while (0)

/* Checks that `call` (taking &err last) returned SHMESH_OK; prints the
 * error otherwise. Needs a `shmesh_error err` in scope. */
#define CHECK_OK(call)                                                      \
  do {                                                                      \
    shmesh_status_code check_ok_code_ = (call);                             \
    if (check_ok_code_ != SHMESH_OK) {                                      \
      fprintf(stderr, "%s:%d: %s failed: %s: %s\n", __FILE__, __LINE__, #call, \
              shmesh_status_code_name(check_ok_code_), err.message);        \
      fflush(stderr);                                                       \
      _exit(1);                                                             \
    }                                                                       \
  } while (0)

/* Checks that `call` returned `code`, and that err carries it with a
 * non-empty message. */
#define CHECK_CODE(call, expected)                                          \
  do {                                                                      \
    shmesh_status_code check_code_ = (call);                                \
    if (check_code_ != (expected) || err.code != (expected) ||              \
        err.message[0] == '\0') {                                           \
      fprintf(stderr, "%s:%d: %s: want %s, got %s: \"%s\"\n", __FILE__, __LINE__, \
              #call, shmesh_status_code_name(expected),                     \
              shmesh_status_code_name(check_code_), err.message);           \
      fflush(stderr);                                                       \
      _exit(1);                                                             \
    }                                                                       \
  } while (0)

static inline void test_sleep_ms(long ms) {
  struct timespec ts;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (ms % 1000) * 1000000L;
  nanosleep(&ts, NULL);
}

/* Makes /tmp/shc-XXXXXX (short: Unix socket paths must fit in 107 bytes)
 * into `dir` (at least 32 bytes). */
static inline void test_make_dir(char* dir, size_t size) {
  CHECK(size >= 32);
  snprintf(dir, size, "/tmp/shc-XXXXXX");
  CHECK(mkdtemp(dir) != NULL);
}

static inline int test_remove_entry(const char* path, const struct stat* st, int flag,
                                    struct FTW* ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  remove(path);
  return 0;
}

/* Removes `dir` and everything in it. */
static inline void test_remove_dir(const char* dir) {
  nftw(dir, test_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The config text of node `name` in run directory `dir`, seeded with node
 * `seed`'s gRPC socket there (NULL: no seed), 64 KiB rings, messages of
 * at most a quarter ring (16368 bytes) and WARNING logs (DEBUG when
 * MESH_TEST_LOG is set), as mesh/test_util.cc's TestConfig. */
static inline void test_config(char* out, size_t size, const char* dir, const char* name,
                               const char* seed) {
  char seeds[256] = "";
  if (seed != NULL) snprintf(seeds, sizeof(seeds), "seeds: \"unix:%s/%s.grpc\"\n", dir, seed);
  int n = snprintf(out, size,
                   "name: \"%s\"\n"
                   "run_dir: \"%s\"\n"
                   "%s"
                   "ring_capacity_bytes: 65536\n"
                   "max_message_bytes: 16368\n"
                   "log_level: %s\n",
                   name, dir, seeds, getenv("MESH_TEST_LOG") != NULL ? "DEBUG" : "WARNING");
  CHECK(n > 0 && (size_t)n < size);
}

/* Whether `needle` occurs in the `len` bytes at `hay`. */
static inline int test_contains(const void* hay, size_t len, const char* needle) {
  return memmem(hay, len, needle, strlen(needle)) != NULL;
}

#endif /* SHMESH_CAPI_C_TEST_UTIL_H_ */
