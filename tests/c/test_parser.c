/*
 * test_parser.c - table-driven tests of hs_parser.c: every rule listed in
 * hs_parser.h at and around its edge, every prefix of every input (PARTIAL
 * until complete, errors stable once found), guard-page placement of every
 * prefix (an over-read faults), and the chunked decoder one-shot, split at
 * every byte boundary and with pipelined bytes after the body.
 *
 * Built by tests/c/Makefile with -fsanitize=address,undefined; the parser is
 * included as a unity build, exactly as the extension modules include it.
 */
#include "hs_parser.c"

#include "test_util.h"

#define OK 1 /* want: a complete, valid head */
#define PARTIAL 2

/* A byte string with its exact length (NULs allowed). */
#define RAW(s) s, (sizeof(s) - 1)

typedef struct request_case {
    const char *name;
    const char *raw;
    size_t raw_len;
    int want;            /* OK, PARTIAL or the error status */
    const char *method;  /* checks when want == OK (NULL: not checked) */
    const char *path;
    const char *query;   /* "-" : no '?' (query NULL) */
    int minor;           /* -1: not checked */
    int keep_alive;      /* -1: not checked */
    int chunked;         /* -1: not checked */
    long long content_length; /* -2: not checked */
    int expect_continue; /* -1: not checked */
} request_case;

#define H11 "Host: example.com\r\n"
#define GOOD(name, raw, method, path, query, minor, ka, ch, cl, ex) \
    { name, RAW(raw), OK, method, path, query, minor, ka, ch, cl, ex }
#define BAD(name, raw, status) { name, RAW(raw), status, NULL, NULL, NULL, -1, -1, -1, -2, -1 }

static const request_case request_cases[] = {
    /* --- basics, request line ---------------------------------------- */
    GOOD("minimal 1.1", "GET / HTTP/1.1\r\n" H11 "\r\n", "GET", "/", "-", 1, 1, 0, -1, 0),
    GOOD("minimal 1.0 without Host", "GET / HTTP/1.0\r\n\r\n", "GET", "/", "-", 0, 0, 0, -1, 0),
    GOOD("path and query", "GET /a/b?x=1&y=2 HTTP/1.1\r\n" H11 "\r\n", "GET", "/a/b", "x=1&y=2", 1, 1,
         0, -1, 0),
    GOOD("empty query", "GET /a? HTTP/1.1\r\n" H11 "\r\n", "GET", "/a", "", 1, 1, 0, -1, 0),
    GOOD("second ? stays in query", "GET /a?b?c HTTP/1.1\r\n" H11 "\r\n", "GET", "/a", "b?c", 1, 1, 0, -1,
         0),
    GOOD("leading CRLFs skipped (RFC 9112 2.2)", "\r\n\r\nGET / HTTP/1.1\r\n" H11 "\r\n", "GET", "/", "-",
         1, 1, 0, -1, 0),
    GOOD("extension method token", "PURGE-ALL! /x HTTP/1.1\r\n" H11 "\r\n", "PURGE-ALL!", "/x", "-", 1, 1,
         0, -1, 0),
    GOOD("method of 32 bytes", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA / HTTP/1.1\r\n" H11 "\r\n",
         "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "/", "-", 1, 1, 0, -1, 0),
    BAD("method of 33 bytes", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA / HTTP/1.1\r\n" H11 "\r\n", 400),
    BAD("empty method", " / HTTP/1.1\r\n" H11 "\r\n", 400),
    BAD("method with non-token byte", "GE(T / HTTP/1.1\r\n" H11 "\r\n", 400),
    BAD("NUL in method", "GE\0T / HTTP/1.1\r\n" H11 "\r\n", 400),
    BAD("two spaces after method", "GET  / HTTP/1.1\r\n" H11 "\r\n", 400),
    BAD("tab as separator", "GET\t/ HTTP/1.1\r\n" H11 "\r\n", 400),
    BAD("two spaces before version", "GET /  HTTP/1.1\r\n" H11 "\r\n", 400),
    BAD("HTTP/0.9 style line", "GET /\r\n\r\n", 400),
    BAD("space inside target", "GET /a b HTTP/1.1\r\n" H11 "\r\n", 400),
    BAD("NUL in target", "GET /a\0b HTTP/1.1\r\n" H11 "\r\n", 400),
    BAD("DEL in target", "GET /a\x7f HTTP/1.1\r\n" H11 "\r\n", 400),
    BAD("obs-text in target", "GET /caf\xc3\xa9 HTTP/1.1\r\n" H11 "\r\n", 400),
    BAD("CTL in target", "GET /a\x01 HTTP/1.1\r\n" H11 "\r\n", 400),
    /* --- versions (RFC 9112 2.3, RFC 9110 15.6.6) ---------------------- */
    BAD("HTTP/2.0 is 505", "GET / HTTP/2.0\r\n" H11 "\r\n", 505),
    BAD("HTTP/0.9 is 505", "GET / HTTP/0.9\r\n\r\n", 505),
    BAD("HTTP/3.1 is 505", "GET / HTTP/3.1\r\n" H11 "\r\n", 505),
    BAD("h2 prior-knowledge preface is 505", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    BAD("HTTP/1.2 is 505 (deliberate, see hs_parser.c)", "GET / HTTP/1.2\r\n" H11 "\r\n", 505),
    BAD("HTTP/1.9 is 505", "GET / HTTP/1.9\r\n" H11 "\r\n", 505),
    BAD("HTTP/1.2 is 505 before Host rules", "GET / HTTP/1.2\r\n\r\n", 505),
    BAD("lowercase http", "GET / http/1.1\r\n" H11 "\r\n", 400),
    BAD("two-digit minor", "GET / HTTP/1.10\r\n" H11 "\r\n", 400),
    BAD("no dot", "GET / HTTP/11\r\n" H11 "\r\n", 400),
    BAD("trailing space after version", "GET / HTTP/1.1 \r\n" H11 "\r\n", 400),
    BAD("letter as version digit", "GET / HTTP/1.x\r\n" H11 "\r\n", 400),
    BAD("bare LF after request line", "GET / HTTP/1.1\n" H11 "\r\n", 400),
    BAD("bare CR after request line", "GET / HTTP/1.1\rHost: x\r\n\r\n", 400),
    /* --- request-target forms (RFC 9112 3.2) --------------------------- */
    GOOD("asterisk-form with OPTIONS", "OPTIONS * HTTP/1.1\r\n" H11 "\r\n", "OPTIONS", "*", "-", 1, 1, 0,
         -1, 0),
    BAD("asterisk-form with GET", "GET * HTTP/1.1\r\n" H11 "\r\n", 400),
    BAD("asterisk followed by more", "OPTIONS *x HTTP/1.1\r\n" H11 "\r\n", 400),
    GOOD("absolute-form", "GET http://example.com/p/q?x=1 HTTP/1.1\r\n" H11 "\r\n", "GET", "/p/q", "x=1",
         1, 1, 0, -1, 0),
    GOOD("absolute-form https with port", "GET https://example.com:8443/p HTTP/1.1\r\n" H11 "\r\n", "GET",
         "/p", "-", 1, 1, 0, -1, 0),
    GOOD("absolute-form scheme case-insensitive", "GET HTTP://Example.COM/p HTTP/1.1\r\n" H11 "\r\n",
         "GET", "/p", "-", 1, 1, 0, -1, 0),
    GOOD("absolute-form without path reads as /", "GET http://example.com HTTP/1.1\r\n" H11 "\r\n", "GET",
         "/", "-", 1, 1, 0, -1, 0),
    GOOD("absolute-form query without path", "GET http://example.com?a=b HTTP/1.1\r\n" H11 "\r\n", "GET",
         "/", "a=b", 1, 1, 0, -1, 0),
    GOOD("absolute-form IPv6 host", "GET http://[::1]:8080/ HTTP/1.1\r\n" H11 "\r\n", "GET", "/", "-", 1,
         1, 0, -1, 0),
    BAD("absolute-form with userinfo", "GET http://user@example.com/ HTTP/1.1\r\n" H11 "\r\n", 400),
    BAD("absolute-form with empty host", "GET http:///p HTTP/1.1\r\n" H11 "\r\n", 400),
    BAD("absolute-form other scheme", "GET ftp://example.com/ HTTP/1.1\r\n" H11 "\r\n", 400),
    BAD("scheme without slashes", "GET http:example.com/ HTTP/1.1\r\n" H11 "\r\n", 400),
    BAD("authority-form", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 400),
    BAD("authority-form with GET", "GET example.com:80 HTTP/1.1\r\n" H11 "\r\n", 400),
    BAD("relative path", "GET a/b HTTP/1.1\r\n" H11 "\r\n", 400),
    BAD("query only", "GET ?a=b HTTP/1.1\r\n" H11 "\r\n", 400),
    /* --- header syntax (RFC 9112 5, RFC 9110 5) ------------------------ */
    BAD("obs-fold", "GET / HTTP/1.1\r\n" H11 "X-A: one\r\n two\r\n\r\n", 400),
    BAD("obs-fold with tab", "GET / HTTP/1.1\r\n" H11 "X-A: one\r\n\ttwo\r\n\r\n", 400),
    BAD("whitespace before first field", "GET / HTTP/1.1\r\n " H11 "\r\n", 400),
    BAD("space before colon", "GET / HTTP/1.1\r\nHost : example.com\r\n\r\n", 400),
    BAD("tab before colon", "GET / HTTP/1.1\r\nHost\t: example.com\r\n\r\n", 400),
    BAD("space inside name", "GET / HTTP/1.1\r\n" H11 "X Y: z\r\n\r\n", 400),
    BAD("empty name", "GET / HTTP/1.1\r\n" H11 ": z\r\n\r\n", 400),
    BAD("name with (", "GET / HTTP/1.1\r\n" H11 "X(: z\r\n\r\n", 400),
    BAD("name with @", "GET / HTTP/1.1\r\n" H11 "X@Y: z\r\n\r\n", 400),
    BAD("name with obs-text", "GET / HTTP/1.1\r\n" H11 "X\xc3\xa9: z\r\n\r\n", 400),
    BAD("NUL in name", "GET / HTTP/1.1\r\n" H11 "X\0Y: z\r\n\r\n", 400),
    BAD("line without colon", "GET / HTTP/1.1\r\n" H11 "NoColon\r\n\r\n", 400),
    BAD("NUL in value", "GET / HTTP/1.1\r\n" H11 "X-A: a\0b\r\n\r\n", 400),
    BAD("CTL in value", "GET / HTTP/1.1\r\n" H11 "X-A: a\x01b\r\n\r\n", 400),
    BAD("DEL in value", "GET / HTTP/1.1\r\n" H11 "X-A: a\x7f\r\n\r\n", 400),
    BAD("ESC in value", "GET / HTTP/1.1\r\n" H11 "X-A: \x1b[31m\r\n\r\n", 400),
    BAD("bare LF ending a field", "GET / HTTP/1.1\r\n" H11 "X-A: a\n\r\n", 400),
    BAD("bare LF in a long value", "GET / HTTP/1.1\r\n" H11 "X-A: aaaaaaaaaaaaaaaa\nbbbbbbbbbbbbbbbb\r\n\r\n",
        400),
    BAD("bare CR in value", "GET / HTTP/1.1\r\n" H11 "X-A: a\rb\r\n\r\n", 400),
    BAD("bare LF ending the head", "GET / HTTP/1.1\r\n" H11 "\n", 400),
    BAD("CR not followed by LF ending the head", "GET / HTTP/1.1\r\n" H11 "\rX", 400),
    BAD("bare LF before request line", "\nGET / HTTP/1.1\r\n" H11 "\r\n", 400),
    BAD("bare CR before request line", "\rGET / HTTP/1.1\r\n" H11 "\r\n", 400),
    GOOD("obs-text and tabs in value", "GET / HTTP/1.1\r\n" H11 "X-A: caf\xc3\xa9\tau lait\r\n\r\n", "GET",
         "/", "-", 1, 1, 0, -1, 0),
    GOOD("empty value", "GET / HTTP/1.1\r\n" H11 "X-Empty:\r\nX-Spaces:   \r\n\r\n", "GET", "/", "-", 1,
         1, 0, -1, 0),
    /* --- Host (RFC 9112 3.2) ------------------------------------------- */
    BAD("1.1 without Host", "GET / HTTP/1.1\r\n\r\n", 400),
    BAD("1.1 with two Hosts", "GET / HTTP/1.1\r\n" H11 H11 "\r\n", 400),
    BAD("1.0 with two Hosts", "GET / HTTP/1.0\r\n" H11 H11 "\r\n", 400),
    BAD("Host with space inside", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    BAD("Host with slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    BAD("Host with userinfo @", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400),
    GOOD("empty Host allowed", "GET / HTTP/1.1\r\nHost:\r\n\r\n", "GET", "/", "-", 1, 1, 0, -1, 0),
    GOOD("Host case-insensitive name, IPv6 and port", "GET / HTTP/1.1\r\nhOsT: [::1]:8080\r\n\r\n", "GET",
         "/", "-", 1, 1, 0, -1, 0),
    GOOD("1.0 with one Host", "GET / HTTP/1.0\r\n" H11 "\r\n", "GET", "/", "-", 0, 0, 0, -1, 0),
    /* --- Connection (RFC 9112 9.3) ------------------------------------- */
    GOOD("1.1 close", "GET / HTTP/1.1\r\n" H11 "Connection: close\r\n\r\n", NULL, NULL, NULL, 1, 0, 0, -1,
         0),
    GOOD("1.1 CLOSE uppercase", "GET / HTTP/1.1\r\n" H11 "Connection: CLOSE\r\n\r\n", NULL, NULL, NULL, 1,
         0, 0, -1, 0),
    GOOD("1.1 Keep-Alive, Upgrade", "GET / HTTP/1.1\r\n" H11 "Connection: Keep-Alive, Upgrade\r\n\r\n",
         NULL, NULL, NULL, 1, 1, 0, -1, 0),
    GOOD("1.0 Keep-Alive, Upgrade", "GET / HTTP/1.0\r\nConnection: Keep-Alive, Upgrade\r\n\r\n", NULL,
         NULL, NULL, 0, 1, 0, -1, 0),
    GOOD("1.0 default close", "GET / HTTP/1.0\r\n\r\n", NULL, NULL, NULL, 0, 0, 0, -1, 0),
    GOOD("1.0 keep-alive", "GET / HTTP/1.0\r\nconnection: keep-alive\r\n\r\n", NULL, NULL, NULL, 0, 1, 0,
         -1, 0),
    GOOD("1.0 keep-alive and close", "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", NULL, NULL,
         NULL, 0, 0, 0, -1, 0),
    GOOD("close in a second Connection field",
         "GET / HTTP/1.1\r\n" H11 "Connection: keep-alive\r\nConnection: upgrade ,close \r\n\r\n", NULL, NULL,
         NULL, 1, 0, 0, -1, 0),
    GOOD("closed is not close", "GET / HTTP/1.1\r\n" H11 "Connection: closed, x-close\r\n\r\n", NULL, NULL,
         NULL, 1, 1, 0, -1, 0),
    /* --- Content-Length (RFC 9110 8.6, RFC 9112 6.3) -------------------- */
    GOOD("Content-Length 5", "POST / HTTP/1.1\r\n" H11 "Content-Length: 5\r\n\r\n", NULL, NULL, NULL, 1, 1,
         0, 5, 0),
    GOOD("Content-Length 0", "POST / HTTP/1.1\r\n" H11 "Content-Length: 0\r\n\r\n", NULL, NULL, NULL, 1, 1,
         0, 0, 0),
    GOOD("Content-Length leading zeros", "POST / HTTP/1.1\r\n" H11 "content-length: 007\r\n\r\n", NULL,
         NULL, NULL, 1, 1, 0, 7, 0),
    GOOD("Content-Length OWS trimmed", "POST / HTTP/1.1\r\n" H11 "Content-Length: \t 5 \t\r\n\r\n", NULL,
         NULL, NULL, 1, 1, 0, 5, 0),
    GOOD("Content-Length = max_body", "POST / HTTP/1.1\r\n" H11 "Content-Length: 1048576\r\n\r\n", NULL,
         NULL, NULL, 1, 1, 0, 1048576, 0),
    BAD("Content-Length = max_body + 1", "POST / HTTP/1.1\r\n" H11 "Content-Length: 1048577\r\n\r\n", 413),
    BAD("Content-Length overflowing uint64",
        "POST / HTTP/1.1\r\n" H11 "Content-Length: 99999999999999999999999999\r\n\r\n", 413),
    BAD("Content-Length 2^64", "POST / HTTP/1.1\r\n" H11 "Content-Length: 18446744073709551616\r\n\r\n",
        413),
    BAD("Content-Length empty", "POST / HTTP/1.1\r\n" H11 "Content-Length:\r\n\r\n", 400),
    BAD("Content-Length negative", "POST / HTTP/1.1\r\n" H11 "Content-Length: -1\r\n\r\n", 400),
    BAD("Content-Length plus sign", "POST / HTTP/1.1\r\n" H11 "Content-Length: +5\r\n\r\n", 400),
    BAD("Content-Length hex", "POST / HTTP/1.1\r\n" H11 "Content-Length: 0x5\r\n\r\n", 400),
    BAD("Content-Length exponent", "POST / HTTP/1.1\r\n" H11 "Content-Length: 1e3\r\n\r\n", 400),
    BAD("Content-Length inner space", "POST / HTTP/1.1\r\n" H11 "Content-Length: 5 5\r\n\r\n", 400),
    BAD("Content-Length list", "POST / HTTP/1.1\r\n" H11 "Content-Length: 5, 5\r\n\r\n", 400),
    BAD("Content-Length twice equal", "POST / HTTP/1.1\r\n" H11 "Content-Length: 5\r\nContent-Length: 5\r\n\r\n",
        400),
    BAD("Content-Length twice different",
        "POST / HTTP/1.1\r\n" H11 "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
    BAD("huge Content-Length with TE is 400 not 413",
        "POST / HTTP/1.1\r\n" H11 "Content-Length: 99999999999999999999\r\nTransfer-Encoding: chunked\r\n\r\n",
        400),
    /* --- Transfer-Encoding (RFC 9112 6.1, 6.3) ------------------------- */
    GOOD("TE chunked", "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked\r\n\r\n", NULL, NULL, NULL, 1,
         1, 1, -1, 0),
    GOOD("TE Chunked with leading space", "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding:  Chunked\r\n\r\n",
         NULL, NULL, NULL, 1, 1, 1, -1, 0),
    GOOD("TE CHUNKED with tabs", "POST / HTTP/1.1\r\n" H11 "transfer-encoding:\tCHUNKED\t\r\n\r\n", NULL,
         NULL, NULL, 1, 1, 1, -1, 0),
    BAD("TE chunked, identity", "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked, identity\r\n\r\n",
        400),
    BAD("TE identity", "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: identity\r\n\r\n", 400),
    BAD("TE gzip", "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: gzip\r\n\r\n", 400),
    BAD("TE gzip, chunked is 501", "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: gzip, chunked\r\n\r\n",
        501),
    BAD("TE gzip,chunked is 501", "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: gzip,chunked\r\n\r\n", 501),
    BAD("TE chunked, chunked", "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked, chunked\r\n\r\n",
        400),
    BAD("TE trailing comma", "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked,\r\n\r\n", 400),
    BAD("TE leading comma", "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: , chunked\r\n\r\n", 400),
    BAD("TE empty", "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding:\r\n\r\n", 400),
    BAD("TE with parameter", "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked;q=1\r\n\r\n", 400),
    BAD("TE xchunked", "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: xchunked\r\n\r\n", 400),
    BAD("TE with vertical tab", "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked\x0b\r\n\r\n", 400),
    BAD("TE quoted", "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: \"chunked\"\r\n\r\n", 400),
    BAD("TE twice", "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        400),
    BAD("TE twice, second odd",
        "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n", 400),
    BAD("TE space before colon", "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding : chunked\r\n\r\n", 400),
    BAD("TE and CL (CL.TE)", "POST / HTTP/1.1\r\n" H11 "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        400),
    BAD("TE and CL (TE.CL)", "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        400),
    BAD("TE gzip, chunked with CL is 400", "POST / HTTP/1.1\r\n" H11
        "Transfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n\r\n", 400),
    BAD("TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    GOOD("Transfer_Encoding is another field", "POST / HTTP/1.1\r\n" H11 "Transfer_Encoding: chunked\r\n\r\n",
         NULL, NULL, NULL, 1, 1, 0, -1, 0),
    /* --- Expect (RFC 9110 10.1.1) -------------------------------------- */
    GOOD("Expect 100-continue", "POST / HTTP/1.1\r\n" H11 "Content-Length: 5\r\nExpect: 100-continue\r\n\r\n",
         NULL, NULL, NULL, 1, 1, 0, 5, 1),
    GOOD("Expect 100-Continue", "POST / HTTP/1.1\r\n" H11 "expect: 100-Continue\r\n\r\n", NULL, NULL, NULL,
         1, 1, 0, -1, 1),
    GOOD("Expect other value", "POST / HTTP/1.1\r\n" H11 "Expect: 100-continuex\r\n\r\n", NULL, NULL, NULL,
         1, 1, 0, -1, 0),
    /* --- a real browser request --------------------------------------- */
    GOOD("browser GET",
         "GET /wp-content/uploads/2010/03/hello-kitty-darth-vader-pink.jpg HTTP/1.1\r\n"
         "Host: www.kittyhell.com\r\n"
         "User-Agent: Mozilla/5.0 (Macintosh; U; Intel Mac OS X 10_6_3; ja-JP-mac; rv:1.9.2.3) "
         "Gecko/20100401 Firefox/3.6.3 Pathtraq/0.9\r\n"
         "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
         "Accept-Language: ja,en-us;q=0.7,en;q=0.3\r\n"
         "Accept-Encoding: gzip,deflate\r\n"
         "Accept-Charset: Shift_JIS,utf-8;q=0.7,*;q=0.7\r\n"
         "Keep-Alive: 115\r\n"
         "Connection: keep-alive\r\n"
         "Cookie: wp_ozh_wsa_visits=2; wp_ozh_wsa_visit_lasttime=xxxxxxxxxx; "
         "__utma=xxxxxxxxx.xxxxxxxxxx.xxxxxxxxxx.xxxxxxxxxx.xxxxxxxxxx.x; "
         "__utmz=xxxxxxxxx.xxxxxxxxxx.x.x.utmccn=(referral)|utmcsr=reader.livedoor.com|utmcct=/reader/|utmcmd=referral\r\n"
         "\r\n",
         "GET", "/wp-content/uploads/2010/03/hello-kitty-darth-vader-pink.jpg", "-", 1, 1, 0, -1, 0),
};

#define N_CASES (sizeof request_cases / sizeof request_cases[0])

static const char *want_name(int want)
{
    static char buf[16];
    if (want == OK)
        return "OK";
    if (want == PARTIAL)
        return "PARTIAL";
    snprintf(buf, sizeof buf, "%d", want);
    return buf;
}

/* Parse bytes placed flush against a guard page. Returns OK/PARTIAL/status. */
static int parse_guarded(guard_region *g, const char *raw, size_t len, const hs_limits *lim,
                         hs_request *req, int *rc_out)
{
    const char *at = (const char *)guard_place(g, raw, len);
    int status = 0;
    guard_readonly(g, 1); /* hs_parser.h: never writes to buf */
    int rc = hs_parse_request(at, len, lim, req, &status);
    guard_readonly(g, 0);
    if (rc_out)
        *rc_out = rc;
    if (rc > 0)
        return OK;
    if (rc == HS_PARSE_PARTIAL)
        return PARTIAL;
    if (rc == HS_PARSE_ERROR)
        return status;
    return -1000 + rc; /* never a valid answer */
}

static int str_is(const char *p, size_t n, const char *want)
{
    return strlen(want) == n && memcmp(p, want, n) == 0;
}

static void check_request_fields(const request_case *c, const hs_request *r, const char *base)
{
    if (c->method)
        CHECK(str_is(r->method, r->method_len, c->method), "method %.*s", (int)r->method_len, r->method);
    if (c->path)
        CHECK(str_is(r->path, r->path_len, c->path), "path %.*s", (int)r->path_len, r->path);
    if (c->query) {
        if (strcmp(c->query, "-") == 0)
            CHECK(r->query == NULL && r->query_len == 0, "query should be absent");
        else
            CHECK(r->query != NULL && str_is(r->query, r->query_len, c->query), "query");
    }
    if (c->minor >= 0)
        CHECK(r->minor_version == c->minor, "minor %d", r->minor_version);
    if (c->keep_alive >= 0)
        CHECK(r->keep_alive == c->keep_alive, "keep_alive %d", r->keep_alive);
    if (c->chunked >= 0)
        CHECK(r->chunked == c->chunked, "chunked %d", r->chunked);
    if (c->content_length != -2)
        CHECK(r->content_length == c->content_length, "content_length %lld", (long long)r->content_length);
    if (c->expect_continue >= 0)
        CHECK(r->expect_continue == c->expect_continue, "expect_continue %d", r->expect_continue);
    /* every pointer lies inside the buffer, all lengths within it */
    const char *end = base + c->raw_len;
    CHECK(r->method >= base && r->method + r->method_len <= end, "method out of buffer");
    CHECK(r->target >= base && r->target + r->target_len <= end, "target out of buffer");
    CHECK(r->path >= base && r->path + r->path_len <= end, "path out of buffer");
    for (size_t i = 0; i < r->num_headers; i++) {
        const hs_header *h = &r->headers[i];
        CHECK(h->name >= base && h->name + h->name_len <= end, "header name out of buffer");
        CHECK(h->value >= base && h->value + h->value_len <= end, "header value out of buffer");
        CHECK(h->name_len > 0, "empty header name");
        CHECK(h->value_len == 0 || (h->value[0] != ' ' && h->value[h->value_len - 1] != ' '),
              "value not trimmed");
    }
}

/*
 * Every case, whole and at every prefix length, flush against a guard page:
 * prefixes of a valid head are PARTIAL; once a prefix is an error, every
 * longer prefix is the same error (the verdict depends only on bytes seen).
 */
static void test_request_table(void)
{
    guard_region g;
    guard_init(&g, 1 << 16);
    for (size_t i = 0; i < N_CASES; i++) {
        const request_case *c = &request_cases[i];
        hs_request req;
        int rc = 0;
        test_current = c->name;
        memset(&req, 0xA5, sizeof req);
        int got = parse_guarded(&g, c->raw, c->raw_len, NULL, &req, &rc);
        CHECK(got == c->want, "want %s got %s", want_name(c->want), want_name(got));
        if (got == OK && c->want == OK) {
            CHECK((size_t)rc == c->raw_len, "head length %d of %zu", rc, c->raw_len);
            check_request_fields(c, &req, (const char *)g.base + g.data_size - c->raw_len);
        }
        int first_error = 0;
        for (size_t n = 0; n < c->raw_len; n++) {
            int p = parse_guarded(&g, c->raw, n, NULL, &req, NULL);
            if (c->want == OK) {
                CHECK(p == PARTIAL, "prefix %zu: want PARTIAL got %s", n, want_name(p));
            } else if (first_error) {
                CHECK(p == first_error, "prefix %zu: error changed from %d to %s", n, first_error,
                      want_name(p));
            } else {
                CHECK(p == PARTIAL || p >= 400, "prefix %zu: got %s", n, want_name(p));
                if (p >= 400)
                    first_error = p;
            }
        }
        if (first_error)
            CHECK(first_error == c->want, "prefix error %d, whole %s", first_error, want_name(c->want));
    }
    guard_free(&g);
}

/* A request whose target is exactly target_len bytes long. */
static size_t build_target_request(char *out, size_t cap, size_t target_len)
{
    size_t n = 0;
    n += (size_t)snprintf(out, cap, "GET /");
    for (size_t i = 1; i < target_len; i++)
        out[n++] = (char)('a' + i % 26);
    n += (size_t)snprintf(out + n, cap - n, " HTTP/1.1\r\nHost: h\r\n\r\n");
    return n;
}

static void test_max_uri_edges(void)
{
    static char raw[HS_DEFAULT_MAX_URI + 256];
    hs_limits lim;
    hs_request req;
    guard_region g;
    guard_init(&g, sizeof raw);
    size_t uris[] = {1, 64, HS_DEFAULT_MAX_URI};
    for (size_t u = 0; u < sizeof uris / sizeof uris[0]; u++) {
        hs_limits_default(&lim);
        lim.max_uri = uris[u];
        test_current = "max_uri exact";
        size_t n = build_target_request(raw, sizeof raw, uris[u]);
        CHECK(parse_guarded(&g, raw, n, &lim, &req, NULL) == OK, "max_uri=%zu exact", uris[u]);
        test_current = "max_uri + 1";
        n = build_target_request(raw, sizeof raw, uris[u] + 1);
        CHECK(parse_guarded(&g, raw, n, &lim, &req, NULL) == 414, "max_uri=%zu +1", uris[u]);
        /* 414 already while partial: the target alone, no SP seen yet */
        test_current = "max_uri + 1 partial";
        size_t partial_len = 4 + uris[u] + 1; /* "GET " + target */
        CHECK(parse_guarded(&g, raw, partial_len, &lim, &req, NULL) == 414, "partial");
        CHECK(parse_guarded(&g, raw, partial_len - 1, &lim, &req, NULL) == PARTIAL, "partial at max");
    }
    guard_free(&g);
}

/* A request with n_fields fields (Host first), padded to exactly total bytes. */
static size_t build_head(char *out, size_t cap, size_t n_fields, size_t total)
{
    size_t n = (size_t)snprintf(out, cap, "GET / HTTP/1.1\r\nHost: h\r\n");
    for (size_t i = 1; i < n_fields; i++)
        n += (size_t)snprintf(out + n, cap - n, "X-F%zu: v\r\n", i);
    if (total) {
        /* pad with one more field "X-Pad: aaaa" so the head is total bytes */
        size_t fixed = n + strlen("X-Pad: ") + 2 + 2;
        if (total < fixed) {
            fprintf(stderr, "build_head: %zu too small\n", total);
            exit(2);
        }
        n += (size_t)snprintf(out + n, cap - n, "X-Pad: ");
        for (size_t i = 0; i < total - fixed; i++)
            out[n++] = 'a';
        out[n++] = '\r';
        out[n++] = '\n';
    }
    out[n++] = '\r';
    out[n++] = '\n';
    return n;
}

static void test_max_head_edges(void)
{
    static char raw[HS_DEFAULT_MAX_HEAD + 1024];
    hs_limits lim;
    hs_request req;
    guard_region g;
    guard_init(&g, sizeof raw);
    size_t heads[] = {100, 1000, HS_DEFAULT_MAX_HEAD};
    for (size_t h = 0; h < sizeof heads / sizeof heads[0]; h++) {
        hs_limits_default(&lim);
        lim.max_head = heads[h];
        test_current = "max_head exact";
        size_t n = build_head(raw, sizeof raw, 1, heads[h]);
        CHECK(n == heads[h], "built %zu", n);
        int rc = 0;
        CHECK(parse_guarded(&g, raw, n, &lim, &req, &rc) == OK && (size_t)rc == n, "max_head=%zu", heads[h]);
        /* bytes after the head (a body) do not count */
        raw[n] = 'B';
        CHECK(parse_guarded(&g, raw, n + 1, &lim, &req, &rc) == OK && (size_t)rc == n, "with body byte");
        test_current = "max_head + 1";
        n = build_head(raw, sizeof raw, 1, heads[h] + 1);
        CHECK(parse_guarded(&g, raw, n, &lim, &req, NULL) == 431, "max_head=%zu +1", heads[h]);
        /* while partial: max_head bytes present and no end yet -> 431 */
        CHECK(parse_guarded(&g, raw, heads[h], &lim, &req, NULL) == 431, "partial at max_head");
        CHECK(parse_guarded(&g, raw, heads[h] - 1, &lim, &req, NULL) == PARTIAL, "partial below");
    }
    /* leading CRLFs count towards the head */
    test_current = "leading CRLFs count";
    hs_limits_default(&lim);
    size_t n = build_head(raw + 2, sizeof raw - 2, 1, 100);
    raw[0] = '\r';
    raw[1] = '\n';
    lim.max_head = n + 2;
    CHECK(parse_guarded(&g, raw, n + 2, &lim, &req, NULL) == OK, "exact with CRLF");
    lim.max_head = n + 1;
    CHECK(parse_guarded(&g, raw, n + 2, &lim, &req, NULL) == 431, "one over with CRLF");
    guard_free(&g);
}

static void test_max_headers_edges(void)
{
    static char raw[HS_DEFAULT_MAX_HEAD];
    hs_limits lim;
    hs_request req;
    guard_region g;
    guard_init(&g, sizeof raw);
    size_t counts[] = {1, 5, HS_MAX_HEADERS};
    for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++) {
        hs_limits_default(&lim);
        lim.max_headers = counts[k];
        test_current = "max_headers exact";
        size_t n = build_head(raw, sizeof raw, counts[k], 0);
        CHECK(parse_guarded(&g, raw, n, &lim, &req, NULL) == OK, "max_headers=%zu", counts[k]);
        CHECK(req.num_headers == counts[k], "num_headers %zu", req.num_headers);
        test_current = "max_headers + 1";
        n = build_head(raw, sizeof raw, counts[k] + 1, 0);
        CHECK(parse_guarded(&g, raw, n, &lim, &req, NULL) == 431, "max_headers=%zu +1", counts[k]);
        /* 431 while partial: the extra field has begun, the head has not ended */
        CHECK(parse_guarded(&g, raw, n - 6, &lim, &req, NULL) == 431, "partial extra field");
    }
    /* a configured limit above HS_MAX_HEADERS is clamped to the array size */
    test_current = "max_headers clamped to HS_MAX_HEADERS";
    hs_limits_default(&lim);
    lim.max_headers = 10 * HS_MAX_HEADERS;
    size_t n = build_head(raw, sizeof raw, HS_MAX_HEADERS + 1, 0);
    CHECK(parse_guarded(&g, raw, n, &lim, &req, NULL) == 431, "clamped");
    n = build_head(raw, sizeof raw, HS_MAX_HEADERS, 0);
    CHECK(parse_guarded(&g, raw, n, &lim, &req, NULL) == OK, "clamped exact");
    guard_free(&g);
}

static void test_body_limit_follows_lim(void)
{
    static const char raw[] = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n";
    hs_limits lim;
    hs_request req;
    guard_region g;
    guard_init(&g, sizeof raw);
    test_current = "Content-Length against lim->max_body";
    hs_limits_default(&lim);
    lim.max_body = 10;
    CHECK(parse_guarded(&g, raw, sizeof raw - 1, &lim, &req, NULL) == OK, "= max_body");
    lim.max_body = 9;
    CHECK(parse_guarded(&g, raw, sizeof raw - 1, &lim, &req, NULL) == 413, "> max_body");
    lim.max_body = 0;
    CHECK(parse_guarded(&g, raw, sizeof raw - 1, &lim, &req, NULL) == 413, "max_body 0");
    guard_free(&g);
}

static void test_headers_captured(void)
{
    static const char raw[] = "GET /x HTTP/1.1\r\nHost: h\r\nX-Trim:  \t a b \t \r\nX-Empty:\r\nX-Case: V\r\n\r\n";
    hs_request req;
    int status = 0;
    test_current = "headers captured";
    int rc = hs_parse_request(raw, sizeof raw - 1, NULL, &req, &status);
    CHECK(rc == (int)(sizeof raw - 1), "rc %d", rc);
    CHECK(req.num_headers == 4, "num %zu", req.num_headers);
    CHECK(str_is(req.headers[0].name, req.headers[0].name_len, "Host"), "name0");
    CHECK(str_is(req.headers[1].name, req.headers[1].name_len, "X-Trim"), "name1");
    CHECK(str_is(req.headers[1].value, req.headers[1].value_len, "a b"), "value1 '%.*s'",
          (int)req.headers[1].value_len, req.headers[1].value);
    CHECK(req.headers[2].value_len == 0, "value2");
    CHECK(str_is(req.headers[3].value, req.headers[3].value_len, "V"), "value3");
    CHECK(str_is(req.target, req.target_len, "/x"), "target");
    /* bytes after the head are left alone and not counted */
    char more[sizeof raw + 8];
    memcpy(more, raw, sizeof raw - 1);
    memcpy(more + sizeof raw - 1, "GET / HT", 8);
    rc = hs_parse_request(more, sizeof more, NULL, &req, &status);
    CHECK(rc == (int)(sizeof raw - 1), "pipelined rc %d", rc);
}

static void test_token_eq(void)
{
    test_current = "hs_token_eq";
    CHECK(hs_token_eq("Chunked", 7, "chunked"), "mixed case");
    CHECK(!hs_token_eq("chunke", 6, "chunked"), "shorter");
    CHECK(!hs_token_eq("chunkedx", 8, "chunked"), "longer");
    CHECK(hs_token_eq("", 0, ""), "empty");
    CHECK(!hs_token_eq("CHUNKE\xc4", 7, "chunked"), "non-ASCII");
}

/* ---- chunked decoder ---------------------------------------------------- */

typedef struct decoded {
    ssize_t rc;        /* last return value */
    char out[8192];    /* payload */
    size_t out_len;
    char rest[256];    /* bytes after the body */
    size_t rest_len;
    uint64_t total;
} decoded;

/* One call over the whole input, placed flush against a guard page. */
static void decode_once(guard_region *g, const char *raw, size_t len, uint64_t max_body, decoded *d)
{
    hs_chunked_decoder dec;
    hs_chunked_init(&dec);
    char *at = (char *)guard_place(g, raw, len);
    size_t n = len;
    d->rc = hs_decode_chunked(&dec, at, &n, max_body);
    d->out_len = n;
    memcpy(d->out, at, n);
    d->rest_len = d->rc > 0 ? (size_t)d->rc : 0;
    if (d->rest_len)
        memcpy(d->rest, at + n, d->rest_len);
    d->total = dec.total;
}

/*
 * Feed the input in pieces ending at the given cut offsets, as a connection
 * would: each call gets only the new raw bytes (placed flush against the
 * guard page); decoded payload is appended to out.
 */
static void decode_pieces(guard_region *g, const char *raw, size_t len, const size_t *cuts,
                          size_t n_cuts, uint64_t max_body, decoded *d)
{
    hs_chunked_decoder dec;
    hs_chunked_init(&dec);
    size_t from = 0;
    d->out_len = 0;
    d->rest_len = 0;
    d->rc = HS_PARSE_PARTIAL;
    for (size_t i = 0; i <= n_cuts && from <= len; i++) {
        size_t to = i < n_cuts ? cuts[i] : len;
        if (to < from)
            continue;
        size_t n = to - from;
        char *at = (char *)guard_place(g, raw + from, n);
        d->rc = hs_decode_chunked(&dec, at, &n, max_body);
        memcpy(d->out + d->out_len, at, n);
        d->out_len += n;
        if (d->rc >= 0) {
            memcpy(d->rest, at + n, (size_t)d->rc);
            d->rest_len = (size_t)d->rc;
            /* the rest of the input was not given to the decoder */
            memcpy(d->rest + d->rest_len, raw + to, len - to);
            d->rest_len += len - to;
            break;
        }
        if (d->rc == HS_PARSE_ERROR)
            break;
        from = to;
    }
    d->total = dec.total;
}

#define CH_OK 0       /* complete; rest compared */
#define CH_PARTIAL 1  /* all input used, body continues */
#define CH_ERR 2      /* 400-class error (total <= max_body) */
#define CH_TOO_BIG 3  /* error with total > max_body */

typedef struct chunked_case {
    const char *name;
    const char *raw;
    size_t raw_len;
    int want;
    const char *payload; /* when CH_OK */
    const char *rest;    /* when CH_OK */
} chunked_case;

#define CGOOD(name, raw, payload, rest) { name, RAW(raw), CH_OK, payload, rest }
#define CPART(name, raw) { name, RAW(raw), CH_PARTIAL, NULL, NULL }
#define CBAD(name, raw, want) { name, RAW(raw), want, NULL, NULL }

#define CHUNK_MAX_BODY 1000 /* max_body used by the chunked table */

static const chunked_case chunked_cases[] = {
    CGOOD("one chunk", "5\r\nhello\r\n0\r\n\r\n", "hello", ""),
    CGOOD("empty body", "0\r\n\r\n", "", ""),
    CGOOD("two chunks", "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world", ""),
    CGOOD("uppercase and lowercase hex", "A\r\n0123456789\r\nb\r\nabcdefghijk\r\n0\r\n\r\n",
          "0123456789abcdefghijk", ""),
    CGOOD("leading zeros", "0005\r\nhello\r\n000\r\n\r\n", "hello", ""),
    CGOOD("16 hex digits", "0000000000000005\r\nhello\r\n0000000000000000\r\n\r\n", "hello", ""),
    CGOOD("extension", "5;name=value\r\nhello\r\n0;last\r\n\r\n", "hello", ""),
    CGOOD("quoted extension", "5;n=\"a b;c\"\r\nhello\r\n0\r\n\r\n", "hello", ""),
    CGOOD("BWS before extension", "5 ;a\r\nhello\r\n0\t; b\r\n\r\n", "hello", ""),
    CGOOD("trailers", "5\r\nhello\r\n0\r\nX-Sum: 1\r\nX-Other:  two words \r\n\r\n", "hello", ""),
    CGOOD("trailer with empty value", "0\r\nX-Empty:\r\n\r\n", "", ""),
    CGOOD("CRLF inside data", "4\r\n\r\n\r\n\r\n0\r\n\r\n", "\r\n\r\n", ""),
    CGOOD("pipelined request after body", "3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", "abc",
          "GET / HTTP/1.1\r\nHost: h\r\n\r\n"),
    CGOOD("pipelined garbage after body", "0\r\n\r\nxyz", "", "xyz"),
    CGOOD("body = max_body", "3e8\r\n"
          "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
          "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
          "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
          "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
          "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
          "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
          "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
          "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
          "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
          "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
          "\r\n0\r\n\r\n",
          "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
          "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
          "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
          "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
          "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
          "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
          "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
          "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
          "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
          "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789",
          ""),
    CPART("body continues", "5\r\nhel"),
    CPART("awaiting last-chunk", "5\r\nhello\r\n"),
    CPART("awaiting final CRLF", "5\r\nhello\r\n0\r\n"),
    CPART("inside trailer", "0\r\nX-A: b"),
    CPART("empty input", ""),
    CBAD("17 hex digits", "00000000000000005\r\nhello\r\n0\r\n\r\n", CH_ERR),
    CBAD("negative size", "-5\r\nhello\r\n0\r\n\r\n", CH_ERR),
    CBAD("0x prefix", "0x5\r\nhello\r\n0\r\n\r\n", CH_ERR),
    CBAD("hex junk", "5g\r\nhello\r\n0\r\n\r\n", CH_ERR),
    CBAD("no size", "\r\nhello\r\n0\r\n\r\n", CH_ERR),
    CBAD("space before size", " 5\r\nhello\r\n0\r\n\r\n", CH_ERR),
    CBAD("plus sign", "+5\r\nhello\r\n0\r\n\r\n", CH_ERR),
    CBAD("trailing space without extension", "5 \r\nhello\r\n0\r\n\r\n", CH_ERR),
    CBAD("bare LF after size", "5\nhello\r\n0\r\n\r\n", CH_ERR),
    CBAD("CR without LF after size", "5\rhello\r\n0\r\n\r\n", CH_ERR),
    CBAD("bare LF after data", "5\r\nhello\n0\r\n\r\n", CH_ERR),
    CBAD("data longer than size", "5\r\nhelloX\r\n0\r\n\r\n", CH_ERR),
    CBAD("data shorter than size", "5\r\nhell\r\n0\r\n\r\n", CH_ERR),
    CBAD("bare LF in extension", "5;a\nb\r\nhello\r\n0\r\n\r\n", CH_ERR),
    CBAD("NUL in extension", "5;a\0\r\nhello\r\n0\r\n\r\n", CH_ERR),
    CBAD("bare LF after last-chunk", "0\n\r\n", CH_ERR),
    CBAD("bare LF ending the body", "0\r\n\n", CH_ERR),
    CBAD("bare LF after trailer", "0\r\nX: y\n\r\n", CH_ERR),
    CBAD("obs-fold in trailer", "0\r\nX: y\r\n z\r\n\r\n", CH_ERR),
    CBAD("space before colon in trailer", "0\r\nX : y\r\n\r\n", CH_ERR),
    CBAD("trailer without colon", "0\r\nXY\r\n\r\n", CH_ERR),
    CBAD("NUL in trailer value", "0\r\nX: a\0b\r\n\r\n", CH_ERR),
    CBAD("Transfer-Encoding trailer", "0\r\nTransfer-Encoding: identity\r\n\r\n", CH_ERR),
    CBAD("Transfer-Encoding: chunked trailer", "0\r\nX: 1\r\ntransfer-ENCODING: chunked\r\n\r\n", CH_ERR),
    CBAD("Transfer-Encoding trailer, empty value", "0\r\nTransfer-Encoding:\r\n\r\n", CH_ERR),
    CGOOD("valid Content-Length trailer is discarded", "5\r\nhello\r\n0\r\nContent-Length: 40\r\n\r\nNEXT",
          "hello", "NEXT"),
    CGOOD("Content-Length trailer with OWS", "0\r\nX: 1\r\ncontent-LENGTH:\t 007 \t\r\nY: 2\r\n\r\n", "", ""),
    CBAD("Content-Length trailer, empty value", "0\r\nCONTENT-LENGTH:\r\n\r\n", CH_ERR),
    CBAD("Content-Length trailer, only OWS", "0\r\nContent-Length:  \r\n\r\n", CH_ERR),
    CBAD("Content-Length trailer, plus sign", "0\r\nContent-Length: +5\r\n\r\n", CH_ERR),
    CBAD("Content-Length trailer, hex", "0\r\nContent-Length: 0x5\r\n\r\n", CH_ERR),
    CBAD("Content-Length trailer, list", "0\r\nContent-Length: 5, 5\r\n\r\n", CH_ERR),
    CBAD("Content-Length trailer, inner space", "0\r\nContent-Length: 5 5\r\n\r\n", CH_ERR),
    CBAD("Content-Length trailer twice", "0\r\nContent-Length: 5\r\nX: y\r\nContent-Length: 5\r\n\r\n", CH_ERR),
    CGOOD("trailer named like a framing field prefix", "0\r\nContent-Lengt: 1\r\nTransfer: x\r\n\r\n", "", ""),
    CGOOD("trailer named like a framing field plus more",
          "0\r\nContent-Lengths: 1\r\nTransfer-Encodingx: x\r\nContent-Type: a\r\n\r\n", "", ""),
    CGOOD("framing names inside a trailer value", "0\r\nX: Content-Length: 5\r\n\r\n", "", ""),
    CBAD("size over max_body", "3e9\r\n", CH_TOO_BIG),
    CPART("size = max_body accepted", "3e8\r\n"),
    CBAD("size 2^64-1", "ffffffffffffffff\r\n", CH_TOO_BIG),
    CBAD("size overflow digits", "10000000000000000\r\n", CH_TOO_BIG),
};

#define N_CHUNKED (sizeof chunked_cases / sizeof chunked_cases[0])

static int chunked_verdict(const decoded *d)
{
    if (d->rc >= 0)
        return CH_OK;
    if (d->rc == HS_PARSE_PARTIAL)
        return CH_PARTIAL;
    if (d->rc == HS_PARSE_ERROR)
        return d->total > CHUNK_MAX_BODY ? CH_TOO_BIG : CH_ERR;
    return -1;
}

static void check_decoded(const chunked_case *c, const decoded *d, const char *how)
{
    int v = chunked_verdict(d);
    CHECK(v == c->want, "%s: want %d got %d (rc %zd)", how, c->want, v, d->rc);
    if (v == CH_OK && c->want == CH_OK) {
        CHECK(d->out_len == strlen(c->payload) && memcmp(d->out, c->payload, d->out_len) == 0,
              "%s: payload '%.*s'", how, (int)d->out_len, d->out);
        CHECK(d->rest_len == strlen(c->rest) && memcmp(d->rest, c->rest, d->rest_len) == 0,
              "%s: rest '%.*s'", how, (int)d->rest_len, d->rest);
        CHECK(d->total == d->out_len, "%s: total %llu", how, (unsigned long long)d->total);
    }
}

static void test_chunked_table(void)
{
    guard_region g;
    guard_init(&g, 1 << 14);
    for (size_t i = 0; i < N_CHUNKED; i++) {
        const chunked_case *c = &chunked_cases[i];
        decoded one, parts;
        test_current = c->name;
        decode_once(&g, c->raw, c->raw_len, CHUNK_MAX_BODY, &one);
        check_decoded(c, &one, "one-shot");
        /* split in two at every byte boundary */
        for (size_t cut = 0; cut <= c->raw_len; cut++) {
            decode_pieces(&g, c->raw, c->raw_len, &cut, 1, CHUNK_MAX_BODY, &parts);
            char how[64];
            snprintf(how, sizeof how, "split at %zu", cut);
            check_decoded(c, &parts, how);
        }
        /* one byte per call */
        if (c->raw_len > 0) {
            size_t *cuts = malloc(c->raw_len * sizeof *cuts);
            if (cuts == NULL)
                exit(2);
            for (size_t k = 0; k < c->raw_len; k++)
                cuts[k] = k + 1;
            decode_pieces(&g, c->raw, c->raw_len, cuts, c->raw_len, CHUNK_MAX_BODY, &parts);
            check_decoded(c, &parts, "byte by byte");
            free(cuts);
        }
    }
    guard_free(&g);
}

static void test_chunked_limits(void)
{
    static char raw[HS_CHUNK_MAX_TRAILER + 256];
    guard_region g;
    guard_init(&g, sizeof raw);
    decoded d;
    size_t n;

    /* chunk-size line (size + extension) of exactly HS_CHUNK_MAX_LINE bytes, then one more */
    test_current = "chunk-ext length limit";
    for (int extra = 0; extra <= 1; extra++) {
        n = 0;
        raw[n++] = '1';
        raw[n++] = ';';
        while (n < (size_t)HS_CHUNK_MAX_LINE + (size_t)extra)
            raw[n++] = 'e';
        memcpy(raw + n, "\r\nX\r\n0\r\n\r\n", 10);
        n += 10;
        decode_once(&g, raw, n, CHUNK_MAX_BODY, &d);
        if (extra == 0)
            CHECK(d.rc == 0 && d.out_len == 1 && d.out[0] == 'X', "line at limit rc %zd", d.rc);
        else
            CHECK(d.rc == HS_PARSE_ERROR && d.total <= CHUNK_MAX_BODY, "line over limit rc %zd", d.rc);
    }

    /* trailer section of exactly HS_CHUNK_MAX_TRAILER bytes (incl. final CRLF), then one more */
    test_current = "trailer size limit";
    for (int extra = 0; extra <= 1; extra++) {
        n = 0;
        memcpy(raw, "0\r\n", 3);
        n = 3;
        size_t trailer_start = n;
        memcpy(raw + n, "X-T: ", 5);
        n += 5;
        size_t want = (size_t)HS_CHUNK_MAX_TRAILER + (size_t)extra; /* bytes from trailer_start */
        while (n - trailer_start < want - 4)
            raw[n++] = 'v';
        memcpy(raw + n, "\r\n\r\n", 4);
        n += 4;
        decode_once(&g, raw, n, CHUNK_MAX_BODY, &d);
        if (extra == 0)
            CHECK(d.rc == 0, "trailer at limit rc %zd", d.rc);
        else
            CHECK(d.rc == HS_PARSE_ERROR, "trailer over limit rc %zd", d.rc);
    }

    /* two chunks that together exceed max_body: error once the second size is read */
    test_current = "sum of chunks over max_body";
    n = (size_t)snprintf(raw, sizeof raw, "3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n");
    decode_once(&g, raw, n, 5, &d);
    CHECK(d.rc == HS_PARSE_ERROR && d.total > 5, "rc %zd total %llu", d.rc, (unsigned long long)d.total);
    decode_once(&g, raw, n, 6, &d);
    CHECK(d.rc == 0 && d.total == 6, "exact rc %zd", d.rc);

    /* max_body of UINT64_MAX: a 16-digit size cannot overflow total */
    test_current = "max_body UINT64_MAX";
    n = (size_t)snprintf(raw, sizeof raw, "ffffffffffffffff\r\nab");
    decode_once(&g, raw, n, UINT64_MAX, &d);
    CHECK(d.rc == HS_PARSE_PARTIAL && d.out_len == 2, "rc %zd", d.rc);
    guard_free(&g);
}

static void test_chunked_after_end_and_error(void)
{
    char buf[64];
    size_t n;
    hs_chunked_decoder dec;
    test_current = "decoder after the end";
    hs_chunked_init(&dec);
    memcpy(buf, "0\r\n\r\n", 5);
    n = 5;
    CHECK(hs_decode_chunked(&dec, buf, &n, 10) == 0 && n == 0, "end");
    memcpy(buf, "GET", 3);
    n = 3;
    CHECK(hs_decode_chunked(&dec, buf, &n, 10) == 3 && n == 0 && memcmp(buf, "GET", 3) == 0,
          "bytes after the end are all rest");
    test_current = "smaller max_body on a later call";
    hs_chunked_init(&dec);
    memcpy(buf, "5\r\nhello\r\n", 10);
    n = 10;
    CHECK(hs_decode_chunked(&dec, buf, &n, 10) == HS_PARSE_PARTIAL && dec.total == 5, "first part");
    memcpy(buf, "1\r\nx\r\n", 6);
    n = 6;
    CHECK(hs_decode_chunked(&dec, buf, &n, 3) == HS_PARSE_ERROR && dec.total > 3, "now over the limit");
    test_current = "decoder error is sticky";
    hs_chunked_init(&dec);
    memcpy(buf, "x\r\n", 3);
    n = 3;
    CHECK(hs_decode_chunked(&dec, buf, &n, 10) == HS_PARSE_ERROR, "error");
    memcpy(buf, "0\r\n\r\n", 5);
    n = 5;
    CHECK(hs_decode_chunked(&dec, buf, &n, 10) == HS_PARSE_ERROR, "still error");
    test_current = "zeroed decoder works like hs_chunked_init";
    memset(&dec, 0, sizeof dec);
    memcpy(buf, "1\r\nz\r\n0\r\n\r\n", 11);
    n = 11;
    CHECK(hs_decode_chunked(&dec, buf, &n, 10) == 0 && n == 1 && buf[0] == 'z', "zeroed");
}

int main(void)
{
    test_request_table();
    test_max_uri_edges();
    test_max_head_edges();
    test_max_headers_edges();
    test_body_limit_follows_lim();
    test_headers_captured();
    test_token_eq();
    test_chunked_table();
    test_chunked_limits();
    test_chunked_after_end_and_error();
#if HS_SWAR_EXACT
    return test_report("test_parser");
#else
    return test_report("test_parser_portable");
#endif
}
