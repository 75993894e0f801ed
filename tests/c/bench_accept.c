/*
 * bench_accept.c - micro-benchmark of hs_accept_gzip, the only per-request
 * work a static route with a baked gzip variant adds (HS_ROUTE_STATIC_GZIP in
 * hs_server.c): the realistic browser request of bench_parser.c (13 fields,
 * Accept-Encoding the 5th) is parsed once, then its Accept-Encoding decided
 * millions of times. Also a request without the field (every field scanned)
 * and one with it last. Built with plain -O2 as the JIT builds the
 * extensions; prints ns per call of CPU time of this thread. `make bench`.
 */
#include "hs_parser.c"
#include "hs_accept.c"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define BENCH_DEFAULT_ITERATIONS 10000000UL
#define BENCH_ROUNDS 3
#define NS_PER_S 1e9

#define BROWSER_FIELDS                                                                               \
    "Host: www.kittyhell.com\r\n"                                                                    \
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n"         \
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n" \
    "Accept-Language: en-US,en;q=0.5\r\n"

#define BROWSER_TAIL                                                                                 \
    "Referer: https://www.kittyhell.com/\r\n"                                                        \
    "Connection: keep-alive\r\n"                                                                     \
    "Cookie: wp_ozh_wsa_visits=2; wp_ozh_wsa_visit_lasttime=1700000000; __utma=1234567\r\n"          \
    "Upgrade-Insecure-Requests: 1\r\n"                                                               \
    "Sec-Fetch-Dest: image\r\n"                                                                      \
    "Sec-Fetch-Mode: no-cors\r\n"                                                                    \
    "Sec-Fetch-Site: same-origin\r\n"

static const char browser_request[] = "GET /app.js HTTP/1.1\r\n" BROWSER_FIELDS
                                      "Accept-Encoding: gzip, deflate, br\r\n" BROWSER_TAIL "\r\n";
static const char no_field_request[] = "GET /app.js HTTP/1.1\r\n" BROWSER_FIELDS BROWSER_TAIL "\r\n";
static const char last_field_request[] = "GET /app.js HTTP/1.1\r\n" BROWSER_FIELDS BROWSER_TAIL
                                         "Accept-Encoding: br;q=1.0, gzip;q=0.8, *;q=0.1\r\n\r\n";

static double thread_seconds(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) {
        perror("clock_gettime");
        exit(1);
    }
    return (double)ts.tv_sec + (double)ts.tv_nsec / NS_PER_S;
}

static void bench(const char *name, const char *raw, int want, unsigned long iterations)
{
    hs_request req;
    int status = 0;
    if (hs_parse_request(raw, strlen(raw), NULL, &req, &status) <= 0) {
        fprintf(stderr, "%s: does not parse (%d)\n", name, status);
        exit(1);
    }
    double best = 0;
    for (int round = 0; round < BENCH_ROUNDS; round++) {
        unsigned long accepted = 0;
        double start = thread_seconds();
        for (unsigned long i = 0; i < iterations; i++) {
            __asm__ volatile("" : : "g"(&req) : "memory"); /* re-read the request every time */
            accepted += (unsigned long)hs_accept_gzip(&req);
        }
        double ns = (thread_seconds() - start) * NS_PER_S / (double)iterations;
        if (accepted != (want ? iterations : 0)) {
            fprintf(stderr, "%s: wrong verdict\n", name);
            exit(1);
        }
        if (round == 0 || ns < best)
            best = ns;
    }
    printf("hs_accept_gzip %-34s %6.1f ns/request (best of %d x %lu)\n", name, best, BENCH_ROUNDS, iterations);
}

int main(void)
{
    const char *env = getenv("BENCH_ITERATIONS");
    unsigned long iterations = env ? strtoul(env, NULL, 10) : BENCH_DEFAULT_ITERATIONS;
    bench("browser (field 5 of 13)", browser_request, 1, iterations);
    bench("no Accept-Encoding (12 fields)", no_field_request, 0, iterations);
    bench("q-values, field 13 of 13", last_field_request, 1, iterations);
    return 0;
}
