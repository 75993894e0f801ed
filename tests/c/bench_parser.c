/*
 * bench_parser.c - micro-benchmark of hs_parse_request (and the chunked
 * decoder) built with plain -O2, as the JIT builds the extensions. Parses a
 * realistic browser request (~500 bytes, a dozen fields) millions of times and
 * prints requests/s and bytes/s per second of CPU time of the benchmarking
 * thread (so other load on the machine inflates the figures less). Not a
 * test: it asserts only that every parse succeeds. `make bench` runs it;
 * BENCH_ITERATIONS overrides the count.
 */
#include "hs_parser.c"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define BENCH_DEFAULT_ITERATIONS 5000000UL
#define BENCH_ROUNDS 3
#define BENCH_CHUNKED_ITERATIONS 2000000UL
#define NS_PER_S 1e9

static const char browser_request[] =
    "GET /wp-content/uploads/2010/03/hello-kitty-darth-vader-pink.jpg HTTP/1.1\r\n"
    "Host: www.kittyhell.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n"
    "Accept-Language: en-US,en;q=0.5\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Referer: https://www.kittyhell.com/\r\n"
    "Connection: keep-alive\r\n"
    "Cookie: wp_ozh_wsa_visits=2; wp_ozh_wsa_visit_lasttime=1700000000; __utma=1234567\r\n"
    "Upgrade-Insecure-Requests: 1\r\n"
    "Sec-Fetch-Dest: image\r\n"
    "Sec-Fetch-Mode: no-cors\r\n"
    "Sec-Fetch-Site: same-origin\r\n"
    "\r\n";

static const char chunked_body[] =
    "1a\r\nabcdefghijklmnopqrstuvwxyz\r\n1a\r\nABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n"
    "a;ext=1\r\n0123456789\r\n0\r\n\r\n";

/*
 * Seconds of CPU time this thread has used: on a shared machine a parse's
 * cost is its CPU time; wall time also counts the time other processes ran.
 */
static double cpu_now_s(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) {
        perror("clock_gettime");
        exit(2);
    }
    return (double)ts.tv_sec + (double)ts.tv_nsec / NS_PER_S;
}

int main(void)
{
    const char *env = getenv("BENCH_ITERATIONS");
    unsigned long iterations = env ? strtoul(env, NULL, 10) : BENCH_DEFAULT_ITERATIONS;
    size_t len = sizeof browser_request - 1;
    hs_limits lim;
    hs_request req;
    int status = 0;
    volatile size_t sink = 0;
    double best = 0;

    hs_limits_default(&lim);
    if (hs_parse_request(browser_request, len, &lim, &req, &status) != (int)len) {
        fprintf(stderr, "bench request does not parse (status %d)\n", status);
        return 1;
    }
    printf("request: %zu bytes, %zu header fields\n", len, req.num_headers);
    for (int round = 0; round < BENCH_ROUNDS; round++) {
        double t0 = cpu_now_s();
        for (unsigned long i = 0; i < iterations; i++) {
            int rc = hs_parse_request(browser_request, len, &lim, &req, &status);
            if (HS_UNLIKELY(rc <= 0)) {
                fprintf(stderr, "parse failed\n");
                return 1;
            }
            sink += req.num_headers;
        }
        double elapsed = cpu_now_s() - t0;
        double rate = (double)iterations / elapsed;
        if (rate > best)
            best = rate;
        printf("round %d: %lu parses in %.3f s of CPU: %.0f requests/s, %.1f MB/s, %.1f ns/request\n",
               round + 1, iterations, elapsed, rate, rate * (double)len / 1e6, NS_PER_S / rate);
    }
    printf("hs_parse_request best: %.0f requests/s, %.1f MB/s (%.1f ns/request)\n", best,
           best * (double)len / 1e6, NS_PER_S / best);

    /* chunked decoding of a 62-byte payload in 3 chunks plus extension */
    {
        size_t body_len = sizeof chunked_body - 1;
        char work[sizeof chunked_body];
        hs_chunked_decoder dec;
        double t0 = cpu_now_s();
        for (unsigned long i = 0; i < BENCH_CHUNKED_ITERATIONS; i++) {
            size_t n = body_len;
            memcpy(work, chunked_body, body_len);
            hs_chunked_init(&dec);
            if (HS_UNLIKELY(hs_decode_chunked(&dec, work, &n, HS_DEFAULT_MAX_BODY) != 0)) {
                fprintf(stderr, "chunked decode failed\n");
                return 1;
            }
            sink += n;
        }
        double elapsed = cpu_now_s() - t0;
        double rate = (double)BENCH_CHUNKED_ITERATIONS / elapsed;
        printf("hs_decode_chunked: %.0f bodies/s, %.1f MB/s of raw chunked input\n", rate,
               rate * (double)body_len / 1e6);
    }
    return sink == 0;
}
