/*
 * test_util.h - the tiny harness shared by the C tests: CHECK macros that
 * count and report failures, a guard-page allocator that places bytes flush
 * against a PROT_NONE page (any over-read faults at once), and the closing
 * "N passed, N failed" line the test runners read.
 */
#ifndef HS_TEST_UTIL_H
#define HS_TEST_UTIL_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static unsigned long test_checks_passed;
static unsigned long test_checks_failed;
static const char *test_current = "";

#define CHECK(cond, ...)                                                                      \
    do {                                                                                      \
        if (cond) {                                                                           \
            test_checks_passed++;                                                             \
        } else {                                                                              \
            test_checks_failed++;                                                             \
            fprintf(stderr, "FAIL %s (%s:%d): %s: ", test_current, __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                                     \
            fputc('\n', stderr);                                                              \
        }                                                                                     \
    } while (0)

/* ---- guard pages -------------------------------------------------------- */

typedef struct guard_region {
    unsigned char *base; /* mapping: data pages then one PROT_NONE page */
    size_t data_size;    /* bytes before the guard page */
    size_t map_size;
} guard_region;

/* Map enough pages for `capacity` bytes plus a trailing PROT_NONE page. */
static void guard_init(guard_region *g, size_t capacity)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t data_pages = (capacity + page - 1) / page;
    if (data_pages == 0)
        data_pages = 1;
    g->data_size = data_pages * page;
    g->map_size = g->data_size + page;
    void *m = mmap(NULL, g->map_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        perror("mmap");
        exit(2);
    }
    g->base = m;
    if (mprotect(g->base + g->data_size, page, PROT_NONE) != 0) {
        perror("mprotect");
        exit(2);
    }
}

/* Copy bytes so that their last byte is the last one before the guard page. */
static unsigned char *guard_place(guard_region *g, const void *bytes, size_t len)
{
    if (len > g->data_size) {
        fprintf(stderr, "guard_place: %zu bytes do not fit\n", len);
        exit(2);
    }
    unsigned char *dst = g->base + g->data_size - len;
    if (len)
        memcpy(dst, bytes, len);
    return dst;
}

/* Make the data pages read-only (1) or writable again (0): the parser must
 * never write to its input, and a write to a read-only page faults. */
static void guard_readonly(guard_region *g, int readonly)
{
    if (mprotect(g->base, g->data_size, readonly ? PROT_READ : PROT_READ | PROT_WRITE) != 0) {
        perror("mprotect");
        exit(2);
    }
}

static void guard_free(guard_region *g)
{
    if (munmap(g->base, g->map_size) != 0)
        perror("munmap");
}

static int test_report(const char *suite)
{
    printf("%s: %lu passed, %lu failed\n", suite, test_checks_passed, test_checks_failed);
    return test_checks_failed ? 1 : 0;
}

#endif /* HS_TEST_UTIL_H */
