/*
 * hs_accesslog.c - the access log (see hs_accesslog.h for the contract):
 * formatting one line per response from the compiled op list, the remote
 * address table, and the buffered write(2).
 *
 * Values taken from the request (method, target, headers) are escaped the way
 * nginx does it: '"', '\\', control bytes, DEL and bytes >= 0x80 become \xHH,
 * so a line is always one line of ASCII and a quoted field stays quoted.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "hs_accesslog.h"

/* Microseconds per second / per millisecond, nanoseconds per microsecond. */
#define HS_ALOG_US_PER_S 1000000
#define HS_ALOG_US_PER_MS 1000
#define HS_ALOG_NS_PER_US 1000
/* Offset of the status code in "HTTP/1.1 200 ...", and the shortest status line. */
#define HS_ALOG_STATUS_OFF 9
#define HS_ALOG_STATUS_LINE_MIN 12
/* Digits of a uint64 in decimal, with room. */
#define HS_ALOG_DIGITS 24
/* Smallest size of the peer table. */
#define HS_ALOG_PEERS_MIN 64
/* Seconds per minute / per hour (UTC offsets). */
#define HS_ALOG_S_PER_MIN 60
#define HS_ALOG_S_PER_HOUR 3600

static void hs_alog_init_tables(void);

static const char *const hs_alog_op_names[HS_ALOG_OP_COUNT] = {
    "literal", "remote_addr", "method", "target", "path", "query", "request", "protocol", "status",
    "bytes_sent", "body_bytes_sent", "duration_us", "duration_s", "header", "time_local", "time_iso8601",
    "msec", "pid", "sent_header", "request_id",
};

HS_API const char *hs_alog_op_name(int kind)
{
    return kind >= 0 && kind < HS_ALOG_OP_COUNT ? hs_alog_op_names[kind] : NULL;
}

HS_API int hs_alog_op_by_name(const char *name)
{
    for (int i = 0; i < HS_ALOG_OP_COUNT; i++)
        if (strcmp(name, hs_alog_op_names[i]) == 0)
            return i;
    return -1;
}

HS_API int64_t hs_alog_now_us(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) < 0)
        return 0; /* cannot fail with a valid clock id */
    return (int64_t)ts.tv_sec * HS_ALOG_US_PER_S + ts.tv_nsec / HS_ALOG_NS_PER_US;
}

static size_t hs_alog_u64(char *out, uint64_t v)
{
    char digits[HS_ALOG_DIGITS];
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = digits[n - 1 - i];
    return n;
}

HS_API int hs_alog_open(hs_alog *a, int fd, const hs_alog_op *ops, int nops)
{
    uint64_t lines = a->lines, dropped = a->dropped, errors = a->write_errors;
    memset(a, 0, sizeof *a);
    a->lines = lines; /* counters accumulate over the process's serve() calls */
    a->dropped = dropped;
    a->write_errors = errors;
    a->fd = -1;
    a->buf = (char *)malloc(HS_ALOG_BUF_CAP);
    if (!a->buf) {
        errno = ENOMEM;
        return -1;
    }
    a->fd = fd;
    a->ops = ops;
    a->nops = nops;
    for (int i = 0; i < nops; i++) {
        if (ops[i].kind == HS_ALOG_DURATION_US || ops[i].kind == HS_ALOG_DURATION_S)
            a->need_clock = 1;
        if (ops[i].kind == HS_ALOG_BODY_BYTES)
            a->need_body = 1;
    }
    a->time_second = (time_t)-1;
    hs_alog_init_tables();
    a->pid_len = hs_alog_u64(a->pid, (uint64_t)getpid());
    a->wake_us = hs_alog_now_us();
    return 0;
}

HS_API int hs_alog_flush(hs_alog *a)
{
    size_t off = 0;
    int rc = 0;
    while (off < a->len) {
        ssize_t n = write(a->fd, a->buf + off, a->len - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break; /* keep the rest for the next flush */
            a->write_errors++;
            a->dropped++; /* at least one line; the count of lines in the rest is not tracked */
            off = a->len;
            rc = -1;
            break;
        }
        off += (size_t)n;
    }
    if (off && off < a->len)
        memmove(a->buf, a->buf + off, a->len - off);
    a->len -= off;
    return rc;
}

HS_API void hs_alog_close(hs_alog *a)
{
    if (a->fd >= 0) {
        (void)hs_alog_flush(a);
        if (close(a->fd) < 0 && errno != EINTR) {
            /* EIO from a delayed write error: nothing left to retry */
        }
        a->fd = -1;
    }
    free(a->buf);
    a->buf = NULL;
    a->len = 0;
    free(a->peers);
    a->peers = NULL;
    a->npeers = 0;
}

/* Text of a peer address; "unix" for a Unix socket, "-" when unknown. */
static void hs_alog_peer_text(int fd, hs_alog_peer *p)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    const char *text = "-";
    char addr[HS_ALOG_ADDR_MAX];
    memset(&ss, 0, sizeof ss);
    if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET) {
            const struct sockaddr_in *in4 = (const struct sockaddr_in *)&ss;
            if (inet_ntop(AF_INET, &in4->sin_addr, addr, sizeof addr))
                text = addr;
        } else if (ss.ss_family == AF_INET6) {
            const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
            if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) { /* dual stack: show the IPv4 client as IPv4 */
                if (inet_ntop(AF_INET, in6->sin6_addr.s6_addr + 12, addr, sizeof addr))
                    text = addr;
            } else if (inet_ntop(AF_INET6, &in6->sin6_addr, addr, sizeof addr)) {
                text = addr;
            }
        } else if (ss.ss_family == AF_UNIX) {
            text = "unix";
        }
    }
    size_t n = strlen(text);
    if (n >= sizeof p->addr)
        n = sizeof p->addr - 1;
    memcpy(p->addr, text, n);
    p->addr_len = (unsigned char)n;
}

HS_API void hs_alog_accepted(hs_alog *a, int fd)
{
    if (fd < 0)
        return;
    if ((size_t)fd >= a->npeers) {
        size_t n = a->npeers ? a->npeers : HS_ALOG_PEERS_MIN;
        while (n <= (size_t)fd)
            n *= 2;
        hs_alog_peer *grown = (hs_alog_peer *)realloc(a->peers, n * sizeof *grown);
        if (!grown)
            return; /* the line says "-" for this client */
        memset(grown + a->npeers, 0, (n - a->npeers) * sizeof *grown);
        a->peers = grown;
        a->npeers = n;
    }
    hs_alog_peer *p = &a->peers[fd];
    p->start_us = a->wake_us;
    hs_alog_peer_text(fd, p);
}

/* Re-format the time fields when the second changed. */
static void hs_alog_tick(hs_alog *a, time_t now)
{
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    if (now == a->time_second)
        return;
    a->time_second = now;
    if (!localtime_r(&now, &tm)) {
        a->time_local_len = a->time_iso_len = 0;
        return;
    }
    long off = tm.tm_gmtoff;
    char sign = off < 0 ? '-' : '+';
    if (off < 0)
        off = -off;
    int oh = (int)(off / HS_ALOG_S_PER_HOUR), om = (int)(off % HS_ALOG_S_PER_HOUR / HS_ALOG_S_PER_MIN);
    int mon = tm.tm_mon >= 0 && tm.tm_mon < 12 ? tm.tm_mon : 0;
    int n = snprintf(a->time_local, sizeof a->time_local, "%02d/%s/%04d:%02d:%02d:%02d %c%02d%02d", tm.tm_mday,
                     months[mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec, sign, oh, om);
    a->time_local_len = n > 0 && (size_t)n < sizeof a->time_local ? (size_t)n : 0;
    n = snprintf(a->time_iso, sizeof a->time_iso, "%04d-%02d-%02dT%02d:%02d:%02d%c%02d:%02d", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, sign, oh, om);
    a->time_iso_len = n > 0 && (size_t)n < sizeof a->time_iso ? (size_t)n : 0;
}

/* A bounded writer over the line being built. */
typedef struct hs_alog_out {
    char *p;
    char *end; /* one byte before the hard end: room for the newline */
} hs_alog_out;

static inline void hs_alog_put(hs_alog_out *o, const char *s, size_t n)
{
    size_t room = (size_t)(o->end - o->p);
    if (n > room)
        n = room;
    memcpy(o->p, s, n);
    o->p += n;
}

static inline void hs_alog_put_u64(hs_alog_out *o, uint64_t v)
{
    char digits[HS_ALOG_DIGITS];
    hs_alog_put(o, digits, hs_alog_u64(digits, v));
}

/* 1 for the bytes written as they are: printable ASCII other than '"' and '\\'. */
static unsigned char hs_alog_plain[256];

static void hs_alog_init_tables(void)
{
    for (int ch = 0; ch < 256; ch++)
        hs_alog_plain[ch] = (unsigned char)(ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\');
}

/* Request bytes, escaped; "-" when absent. Runs of plain bytes are copied at once. */
static void hs_alog_put_escaped(hs_alog_out *o, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    if (!s) {
        hs_alog_put(o, "-", 1);
        return;
    }
    size_t i = 0;
    while (i < n) {
        size_t run = i;
        while (run < n && hs_alog_plain[(unsigned char)s[run]])
            run++;
        hs_alog_put(o, s + i, run - i);
        if (run == n)
            return;
        unsigned char ch = (unsigned char)s[run];
        char esc[4] = {'\\', 'x', hex[ch >> 4], hex[ch & 0xf]};
        hs_alog_put(o, esc, sizeof esc);
        i = run + 1;
    }
}

/* Bytes after the response head (the first CRLFCRLF); 0 when there is none. */
static size_t hs_alog_body_bytes(const char *resp, size_t len)
{
    const char *p = resp, *end = resp + len;
    while (p < end) {
        const char *lf = (const char *)memchr(p, '\n', (size_t)(end - p));
        if (!lf)
            return 0;
        if (lf - resp >= 3 && lf[-1] == '\r' && lf[-2] == '\n' && lf[-3] == '\r')
            return (size_t)(end - lf - 1);
        p = lf + 1;
    }
    return 0;
}

/* ASCII case-insensitive comparison of n bytes of s with lower_name (already lower case). */
static int hs_alog_name_eq(const char *s, const char *lower_name, size_t n)
{
    for (size_t j = 0; j < n; j++) {
        unsigned char ch = (unsigned char)s[j];
        if (ch >= 'A' && ch <= 'Z')
            ch = (unsigned char)(ch + ('a' - 'A'));
        if (ch != (unsigned char)lower_name[j])
            return 0;
    }
    return 1;
}

static const hs_header *hs_alog_find_header(const hs_request *r, const char *lower_name, size_t len)
{
    for (size_t i = 0; i < r->num_headers; i++) {
        const hs_header *h = &r->headers[i];
        if (h->name_len == len && hs_alog_name_eq(h->name, lower_name, len))
            return h;
    }
    return NULL;
}

/*
 * The value of the first field named lower_name in the response head at resp
 * (status line, then "Name: value" lines, up to the empty line): 1 with
 * value and value_len set (surrounding blanks trimmed), 0 when absent. Only our
 * own serialiser's output is scanned (one SP after the colon, CRLF endings),
 * but any of it is handled without reading past resp_len.
 */
static int hs_alog_find_sent(const char *resp, size_t resp_len, const char *lower_name, size_t len,
                             const char **value, size_t *value_len)
{
    const char *end = resp + resp_len;
    const char *line = (const char *)memchr(resp, '\n', resp_len); /* skip the status line */
    while (line && ++line < end) {
        const char *lf = (const char *)memchr(line, '\n', (size_t)(end - line));
        const char *stop = lf ? lf : end;
        if (stop > line && stop[-1] == '\r')
            stop--;
        if (stop == line)
            return 0; /* the empty line: end of the head */
        if ((size_t)(stop - line) > len && line[len] == ':' && hs_alog_name_eq(line, lower_name, len)) {
            const char *v = line + len + 1;
            while (v < stop && (*v == ' ' || *v == '\t'))
                v++;
            const char *v_end = stop;
            while (v_end > v && (v_end[-1] == ' ' || v_end[-1] == '\t'))
                v_end--;
            *value = v;
            *value_len = (size_t)(v_end - v);
            return 1;
        }
        line = lf;
    }
    return 0;
}

HS_API void hs_alog_line(hs_alog *a, int fd, const hs_request *r, const char *resp, size_t resp_len, time_t now)
{
    if (HS_UNLIKELY(a->fd < 0))
        return;
    if (HS_ALOG_BUF_CAP - a->len < HS_ALOG_LINE_MAX) {
        (void)hs_alog_flush(a);
        if (HS_ALOG_BUF_CAP - a->len < HS_ALOG_LINE_MAX) { /* a non-blocking fd is full: lose the line */
            a->dropped++;
            return;
        }
    }
    hs_alog_out o = {a->buf + a->len, a->buf + a->len + HS_ALOG_LINE_MAX - 1};
    const hs_alog_peer *peer = (fd >= 0 && (size_t)fd < a->npeers) ? &a->peers[fd] : NULL;
    int have_status = resp_len >= HS_ALOG_STATUS_LINE_MIN && resp[0] == 'H' && resp[4] == '/' &&
                      resp[HS_ALOG_STATUS_OFF - 1] == ' ';
    int64_t duration_us = 0;
    if (a->need_clock && peer && peer->start_us) {
        duration_us = hs_alog_now_us() - peer->start_us;
        if (duration_us < 0)
            duration_us = 0;
    }
    size_t body_bytes = (a->need_body ? hs_alog_body_bytes(resp, resp_len) : 0) + (size_t)a->file_body;
    for (int i = 0; i < a->nops; i++) {
        const hs_alog_op *op = &a->ops[i];
        switch (op->kind) {
        case HS_ALOG_LITERAL:
            hs_alog_put(&o, op->arg, op->arg_len);
            break;
        case HS_ALOG_REMOTE_ADDR:
            if (peer && peer->addr_len)
                hs_alog_put(&o, peer->addr, peer->addr_len);
            else
                hs_alog_put(&o, "-", 1);
            break;
        case HS_ALOG_METHOD:
            hs_alog_put_escaped(&o, r ? r->method : NULL, r ? r->method_len : 0);
            break;
        case HS_ALOG_TARGET:
            hs_alog_put_escaped(&o, r ? r->target : NULL, r ? r->target_len : 0);
            break;
        case HS_ALOG_PATH:
            hs_alog_put_escaped(&o, r ? r->path : NULL, r ? r->path_len : 0);
            break;
        case HS_ALOG_QUERY:
            hs_alog_put_escaped(&o, r ? r->query : NULL, r ? r->query_len : 0);
            break;
        case HS_ALOG_REQUEST:
            if (!r || !r->method || !r->target) {
                hs_alog_put(&o, "-", 1);
                break;
            }
            hs_alog_put_escaped(&o, r->method, r->method_len);
            hs_alog_put(&o, " ", 1);
            hs_alog_put_escaped(&o, r->target, r->target_len);
            if (r->minor_version == 0 || r->minor_version == 1) {
                hs_alog_put(&o, " HTTP/1.", 8);
                hs_alog_put(&o, r->minor_version ? "1" : "0", 1);
            }
            break;
        case HS_ALOG_PROTOCOL:
            if (r && (r->minor_version == 0 || r->minor_version == 1))
                hs_alog_put(&o, r->minor_version ? "HTTP/1.1" : "HTTP/1.0", 8);
            else
                hs_alog_put(&o, "-", 1);
            break;
        case HS_ALOG_STATUS:
            if (have_status)
                hs_alog_put(&o, resp + HS_ALOG_STATUS_OFF, 3);
            else
                hs_alog_put(&o, "-", 1);
            break;
        case HS_ALOG_BYTES_SENT:
            hs_alog_put_u64(&o, resp_len + a->file_body);
            break;
        case HS_ALOG_BODY_BYTES:
            hs_alog_put_u64(&o, body_bytes);
            break;
        case HS_ALOG_DURATION_US:
            hs_alog_put_u64(&o, (uint64_t)duration_us);
            break;
        case HS_ALOG_DURATION_S: {
            uint64_t ms = (uint64_t)duration_us / HS_ALOG_US_PER_MS;
            char frac[3] = {(char)('0' + ms % 1000 / 100), (char)('0' + ms % 100 / 10), (char)('0' + ms % 10)};
            hs_alog_put_u64(&o, ms / 1000);
            hs_alog_put(&o, ".", 1);
            hs_alog_put(&o, frac, sizeof frac);
            break;
        }
        case HS_ALOG_HEADER: {
            const hs_header *h = r ? hs_alog_find_header(r, op->arg, op->arg_len) : NULL;
            hs_alog_put_escaped(&o, h ? h->value : NULL, h ? h->value_len : 0);
            break;
        }
        case HS_ALOG_SENT_HEADER:
        case HS_ALOG_REQUEST_ID: {
            const char *value = NULL;
            size_t value_len = 0;
            if (!(have_status && hs_alog_find_sent(resp, resp_len, op->arg, op->arg_len, &value, &value_len)) &&
                op->kind == HS_ALOG_REQUEST_ID && r) {
                const hs_header *h = hs_alog_find_header(r, op->arg, op->arg_len);
                if (h) {
                    value = h->value;
                    value_len = h->value_len;
                }
            }
            hs_alog_put_escaped(&o, value, value_len);
            break;
        }
        case HS_ALOG_TIME_LOCAL:
            hs_alog_tick(a, now);
            hs_alog_put(&o, a->time_local, a->time_local_len);
            break;
        case HS_ALOG_TIME_ISO8601:
            hs_alog_tick(a, now);
            hs_alog_put(&o, a->time_iso, a->time_iso_len);
            break;
        case HS_ALOG_MSEC: {
            struct timespec ts;
            if (clock_gettime(CLOCK_REALTIME, &ts) < 0) {
                hs_alog_put(&o, "-", 1);
                break;
            }
            long ms = ts.tv_nsec / (HS_ALOG_NS_PER_US * HS_ALOG_US_PER_MS);
            char frac[3] = {(char)('0' + ms / 100), (char)('0' + ms / 10 % 10), (char)('0' + ms % 10)};
            hs_alog_put_u64(&o, (uint64_t)ts.tv_sec);
            hs_alog_put(&o, ".", 1);
            hs_alog_put(&o, frac, sizeof frac);
            break;
        }
        case HS_ALOG_PID:
            hs_alog_put(&o, a->pid, a->pid_len);
            break;
        default:
            break;
        }
    }
    *o.p++ = '\n'; /* o.end leaves room for it */
    a->len = (size_t)(o.p - a->buf);
    a->lines++;
    if (a->len >= HS_ALOG_FLUSH_AT)
        (void)hs_alog_flush(a);
}
