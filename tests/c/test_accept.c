/*
 * test_accept.c - table-driven tests of hs_accept.c (Accept-Encoding
 * negotiation for gzip): the q-value grammar at its edges, member and
 * parameter splitting with OWS, x-gzip, "*" and its precedence, repeated
 * fields combining, and the field lookup through a real parsed request.
 * Every value is placed flush against a guard page on read-only pages (an
 * over-read or a write faults).
 *
 * Built by tests/c/Makefile with -fsanitize=address,undefined; the rules are
 * those of hypersonic._encoding (tests/test_accept_differential.py checks the
 * two against each other on generated headers).
 */
#include "hs_parser.c"
#include "hs_accept.c"

#include "test_util.h"

typedef struct qvalue_case {
    const char *params;
    int want; /* thousandths, or HS_ACCEPT_Q_NONE */
} qvalue_case;

static const qvalue_case qvalue_cases[] = {
    {"", HS_ACCEPT_Q_ONE},
    {"q=1", 1000},
    {"q=1.", 1000},
    {"q=1.000", 1000},
    {"q=1.001", HS_ACCEPT_Q_NONE},
    {"q=0", 0},
    {"q=0.", 0},
    {"q=0.5", 500},
    {"q=0.05", 50},
    {"q=0.005", 5},
    {"q=0.999", 999},
    {"q=0.1234", HS_ACCEPT_Q_NONE},
    {"q=2", HS_ACCEPT_Q_NONE},
    {"q=", HS_ACCEPT_Q_NONE},
    {"q", HS_ACCEPT_Q_NONE},
    {"q=.5", HS_ACCEPT_Q_NONE},
    {"q=0,5", HS_ACCEPT_Q_NONE},
    {"q=0.5x", HS_ACCEPT_Q_NONE},
    {"q=-0", HS_ACCEPT_Q_NONE},
    {"Q=0.25", 250},
    {" q = 0.25 ", 250},
    {"\tq\t=\t0.25\t", 250},
    {"level=9", HS_ACCEPT_Q_ONE},
    {"level=9;q=0.3", 300},
    {"q=0.3;level", 300},
    {"q=0.3;q=0.7", 700},
    {"q=0.3;q=bad", HS_ACCEPT_Q_NONE},
    {";;q=0.2;;", 200},
    {"qq=0", HS_ACCEPT_Q_ONE},
};

typedef struct accept_case {
    const char *value;
    int want;
} accept_case;

static const accept_case accept_cases[] = {
    {"", 0},
    {"gzip", 1},
    {"GZIP", 1},
    {"GzIp", 1},
    {"x-gzip", 1},
    {"X-Gzip;q=0.1", 1},
    {"deflate, gzip", 1},
    {"gzip, deflate, br", 1},
    {"br", 0},
    {"identity", 0},
    {"gzip;q=0", 0},
    {"gzip; q=0", 0},
    {"gzip ;q=0", 0},
    {"gzip;Q=0.000", 0},
    {"gzip;q=0.001", 1},
    {"gzip;q=1", 1},
    {"*", 1},
    {"*;q=0", 0},
    {"*, gzip;q=0", 0},
    {"gzip;q=0, *", 0},
    {"gzip;q=0.5, *;q=0", 1},
    {"br;q=1, *;q=0.1", 1},
    {"*;q=0.1, *;q=0", 0},
    {"*;q=0, *;q=0.1", 1},
    {"gzip;q=0, gzip;q=0.5", 1},
    {"gzip;q=0.5, gzip;q=0", 1},
    {"x-gzip;q=0, gzip", 1},
    {"gzip;q=2", 0},
    {"gzip;q=abc", 0},
    {"gzip;q=abc, *", 1},
    {"gzip;q=0.5x", 0},
    {"gzip;q=0.1234", 0},
    {"gzip;level=9", 1},
    {" , ,gzip , ", 1},
    {",,,", 0},
    {"gzipx", 0},
    {"gzi", 0},
    {"g zip", 0},
    {"**", 0},
    {"\tgzip\t", 1},
};

/* hs_accept_feed over value[0..len) placed flush against a guard page. */
static int accepts_guarded(guard_region *g, const char *value)
{
    size_t len = strlen(value);
    const char *p = (const char *)guard_place(g, value, len);
    hs_accept_scan scan;
    guard_readonly(g, 1); /* the scan never writes to its input */
    hs_accept_begin(&scan);
    hs_accept_feed(&scan, p, len);
    guard_readonly(g, 0);
    return hs_accept_result(&scan);
}

static void test_qvalues(guard_region *g)
{
    test_current = "qvalue";
    for (size_t i = 0; i < sizeof qvalue_cases / sizeof qvalue_cases[0]; i++) {
        const qvalue_case *t = &qvalue_cases[i];
        size_t len = strlen(t->params);
        const char *params = (const char *)guard_place(g, t->params, len);
        guard_readonly(g, 1);
        int got = hs_accept_qvalue(params, len);
        guard_readonly(g, 0);
        CHECK(got == t->want, "params \"%s\": got %d, want %d", t->params, got, t->want);
    }
}

static void test_values(guard_region *g)
{
    test_current = "value";
    for (size_t i = 0; i < sizeof accept_cases / sizeof accept_cases[0]; i++) {
        const accept_case *t = &accept_cases[i];
        int got = accepts_guarded(g, t->value);
        CHECK(got == t->want, "Accept-Encoding \"%s\": got %d, want %d", t->value, got, t->want);
    }
}

/* Parse a whole request and ask hs_accept_gzip; -1 when the head does not parse. */
static int accepts_request(const char *raw)
{
    hs_request req;
    int status = 0;
    if (hs_parse_request(raw, strlen(raw), NULL, &req, &status) <= 0)
        return -1;
    return hs_accept_gzip(&req);
}

#define REQ(fields) "GET / HTTP/1.1\r\nHost: x\r\n" fields "\r\n"

static void test_requests(void)
{
    test_current = "request";
    CHECK(accepts_request(REQ("")) == 0, "no Accept-Encoding field: identity only");
    CHECK(accepts_request(REQ("Accept-Encoding: gzip\r\n")) == 1, "one field");
    CHECK(accepts_request(REQ("accept-encoding: gzip\r\n")) == 1, "field name is case-insensitive");
    CHECK(accepts_request(REQ("ACCEPT-ENCODING:gzip\r\n")) == 1, "no OWS after the colon");
    CHECK(accepts_request(REQ("Accept-Encoding: \r\n")) == 0, "empty value");
    CHECK(accepts_request(REQ("Accept-Encoding: br\r\nAccept-Encoding: gzip\r\n")) == 1,
          "repeated fields combine");
    CHECK(accepts_request(REQ("Accept-Encoding: gzip\r\nAccept-Encoding: gzip;q=0\r\n")) == 1,
          "the highest gzip q of all fields wins");
    CHECK(accepts_request(REQ("Accept-Encoding: *\r\nX: 1\r\nAccept-Encoding: gzip;q=0\r\n")) == 0,
          "an explicit gzip in a later field beats * in an earlier one");
    CHECK(accepts_request(REQ("Accept-Encoding: *;q=0\r\nAccept-Encoding: *\r\n")) == 1,
          "the last * wins across fields");
    CHECK(accepts_request(REQ("Accept-Encodings: gzip\r\n")) == 0, "a longer field name is another field");
    CHECK(accepts_request(REQ("Accept-Encodin: gzip\r\n")) == 0, "a shorter field name is another field");
    CHECK(accepts_request(REQ("Content-Encoding: gzip\r\n")) == 0, "Content-Encoding is not Accept-Encoding");
}

int main(void)
{
    guard_region g;
    guard_init(&g, 4096);
    test_qvalues(&g);
    test_values(&g);
    test_requests();
    guard_free(&g);
    return test_report("test_accept");
}
