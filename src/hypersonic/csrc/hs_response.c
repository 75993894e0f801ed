/*
 * hs_response.c - writing HTTP/1.1 responses into a connection's write queue:
 * status line, Date, Content-Length, the Connection field, and whole simple
 * responses (errors, 404/405, OPTIONS) that carry the app's security headers.
 *
 * Must be included after the generated hs_app.h, which provides the status
 * lines (hs_app_status) and the field block of error responses
 * (hs_app_error_block: Content-Type + security headers).
 */
#include <stddef.h>
#include <string.h>

#include "hs_conn.h"
#include "hs_date.h"

/* Lowest and highest status with an entry in hs_app_status. */
#define HS_STATUS_MIN 100
#define HS_STATUS_MAX 599
/* Room for a size_t in decimal. */
#define HS_DECIMAL_MAX 24

#define HS_LIT(s) s, (sizeof(s) - 1)

/* Append "Connection: close" / "Connection: keep-alive" as the request needs:
 * close is always echoed; keep-alive only to HTTP/1.0 (RFC 9112 9.3). */
HS_API int hs_resp_connection(hs_conn *c, int keep_alive, int minor_version)
{
    if (!keep_alive)
        return hs_conn_queue(c, HS_LIT("Connection: close\r\n"));
    if (minor_version == 0)
        return hs_conn_queue(c, HS_LIT("Connection: keep-alive\r\n"));
    return 0;
}

/* Append the status line and the Date field. */
HS_API int hs_resp_begin(hs_conn *c, int status, const char *date)
{
    if (status < HS_STATUS_MIN || status > HS_STATUS_MAX)
        status = 500;
    const hs_status_line *sl = &hs_app_status[status - HS_STATUS_MIN];
    if (hs_buf_reserve(&c->wbuf, sl->len + sizeof("Date: \r\n") - 1 + HS_DATE_LEN) < 0)
        return -1;
    char *out = c->wbuf.data + c->wbuf.len;
    memcpy(out, sl->text, sl->len);
    out += sl->len;
    memcpy(out, "Date: ", 6);
    out += 6;
    memcpy(out, date, HS_DATE_LEN);
    out += HS_DATE_LEN;
    out[0] = '\r';
    out[1] = '\n';
    c->wbuf.len += sl->len + 6 + HS_DATE_LEN + 2;
    return 0;
}

/* Append "Content-Length: n\r\n". */
HS_API int hs_resp_content_length(hs_conn *c, size_t n)
{
    char digits[HS_DECIMAL_MAX];
    char *end = digits + sizeof digits, *p = end;
    do {
        *--p = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    if (hs_conn_queue(c, HS_LIT("Content-Length: ")) < 0 || hs_conn_queue(c, p, (size_t)(end - p)) < 0 ||
        hs_conn_queue(c, HS_LIT("\r\n")) < 0)
        return -1;
    return 0;
}

/*
 * Append a whole server-made response: status, Date, Content-Type and the
 * security headers, `extra` field lines (may be NULL), Content-Length (not for
 * 204), Connection, and the body unless head_only.
 */
HS_API int hs_resp_simple(hs_conn *c, const char *date, int status, const char *extra, size_t extra_len,
                          const char *body, size_t body_len, int keep_alive, int minor_version, int head_only)
{
    int no_content = status == 204 || status == 304;
    if (hs_resp_begin(c, status, date) < 0)
        return -1;
    if (no_content) {
        if (hs_conn_queue(c, hs_app_security_block, sizeof(hs_app_security_block) - 1) < 0)
            return -1;
    } else if (hs_conn_queue(c, hs_app_error_block, sizeof(hs_app_error_block) - 1) < 0 ||
               hs_resp_content_length(c, body_len) < 0) {
        return -1;
    }
    if (extra_len && hs_conn_queue(c, extra, extra_len) < 0)
        return -1;
    if (hs_resp_connection(c, keep_alive, minor_version) < 0 || hs_conn_queue(c, HS_LIT("\r\n")) < 0)
        return -1;
    if (!head_only && !no_content && body_len && hs_conn_queue(c, body, body_len) < 0)
        return -1;
    return 0;
}
