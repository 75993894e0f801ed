/*
 * accept_oracle.c - hs_accept_gzip as a line filter, for the differential test
 * against hypersonic._encoding (tests/test_accept_differential.py).
 *
 * Each input line holds the values of the request's Accept-Encoding fields,
 * separated by the byte 0x1F (unit separator); a line that is exactly 0x1E
 * means "no Accept-Encoding field". The program builds a whole request head
 * with one field per value, parses it with hs_parse_request and answers one
 * line: "1" (gzip accepted), "0" (not), or "E <status>" (the head did not
 * parse; the test only sends values the parser accepts). Output is flushed
 * per line so the test can drive it interactively.
 */
#include "hs_parser.c"
#include "hs_accept.c"

#include <stdio.h>
#include <stdlib.h>

/* Room for a request head built from one input line. */
#define ORACLE_HEAD_MAX 65536
#define ORACLE_LINE_MAX 16384
#define ORACLE_FIELD_SEP '\x1f'
#define ORACLE_NO_FIELD '\x1e'

static const char request_line[] = "GET / HTTP/1.1\r\nHost: oracle\r\n";
static const char field_name[] = "Accept-Encoding: ";

static size_t append(char *head, size_t at, const char *p, size_t n)
{
    if (at + n > ORACLE_HEAD_MAX) {
        fprintf(stderr, "accept_oracle: head too long\n");
        exit(2);
    }
    memcpy(head + at, p, n);
    return at + n;
}

int main(void)
{
    static char line[ORACLE_LINE_MAX];
    static char head[ORACLE_HEAD_MAX];
    while (fgets(line, sizeof line, stdin)) {
        size_t len = strlen(line);
        if (len && line[len - 1] == '\n')
            line[--len] = '\0';
        size_t at = append(head, 0, request_line, sizeof request_line - 1);
        if (!(len == 1 && line[0] == ORACLE_NO_FIELD)) {
            const char *p = line, *end = line + len;
            for (;;) {
                const char *sep = memchr(p, ORACLE_FIELD_SEP, (size_t)(end - p));
                const char *value_end = sep ? sep : end;
                at = append(head, at, field_name, sizeof field_name - 1);
                at = append(head, at, p, (size_t)(value_end - p));
                at = append(head, at, "\r\n", 2);
                if (!sep)
                    break;
                p = sep + 1;
            }
        }
        at = append(head, at, "\r\n", 2);
        hs_request req;
        int status = 0;
        if (hs_parse_request(head, at, NULL, &req, &status) <= 0)
            printf("E %d\n", status);
        else
            printf("%d\n", hs_accept_gzip(&req));
        if (fflush(stdout) != 0)
            return 1;
    }
    return 0;
}
