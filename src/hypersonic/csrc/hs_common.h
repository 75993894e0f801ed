/*
 * hs_common.h - what every Hypersonic C file shares: branch hints, the
 * compile-time defaults of every limit, and small helpers.
 *
 * Each limit here is a default; the Python layer passes the configured value
 * at run time (struct hs_limits in hs_parser.h). Nothing in this file
 * allocates or does I/O.
 */
#ifndef HS_COMMON_H
#define HS_COMMON_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__) || defined(__clang__)
#define HS_LIKELY(x) __builtin_expect(!!(x), 1)
#define HS_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define HS_UNUSED __attribute__((unused))
#else
#define HS_LIKELY(x) (x)
#define HS_UNLIKELY(x) (x)
#define HS_UNUSED
#endif

/* Largest request line target accepted before 414 URI Too Long. */
#define HS_DEFAULT_MAX_URI 8192
/* Largest request head (request line + headers + CRLFCRLF) before 431. */
#define HS_DEFAULT_MAX_HEAD 16384
/* Most header fields in one request before 431. */
#define HS_MAX_HEADERS 100
/* Largest request body (Content-Length or decoded chunked) before 413. */
#define HS_DEFAULT_MAX_BODY (1024 * 1024)
/* Longest method token accepted (RFC 9110 has no limit; ours: 501/400). */
#define HS_MAX_METHOD 32

/*
 * Read-buffer space offered to recv(). A connection's first read offers at
 * least HS_READ_FIRST (a typical request head fits, so thousands of idle
 * keep-alive connections cost little memory); only a read that fills the
 * space offered grows the buffer, by HS_READ_CHUNK per further recv().
 */
#define HS_READ_FIRST 4096
#define HS_READ_CHUNK 16384



/*
 * Every C file's functions are declared HS_API: each extension module is built
 * as one translation unit that #includes the .c files it needs (a "unity"
 * build), so nothing is exported but the module's PyInit, the compiler sees
 * everything to inline, and unused helpers cost nothing. Test programs and
 * fuzz harnesses include the .c files the same way.
 */
#define HS_API static HS_UNUSED
#endif /* HS_COMMON_H */
