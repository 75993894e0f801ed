/*
 * hs_file.c - a response body sent from a file descriptor: the bytes
 * [file_off, file_off + file_left) of c->file_fd go out after the connection's
 * write queue (the head) has drained, with sendfile(2) on Linux (no copy into
 * user space) and pread(2) + send(2) elsewhere. Non-blocking and resumable:
 * hs_file_flush sends until the socket is full (HS_FLUSH_AGAIN: call again on
 * writability) or at most HS_FILE_FLUSH_BUDGET bytes (fairness: one fast
 * client does not hold the loop for a whole large file). The connection owns
 * the descriptor from hs_file_attach on; hs_file_release closes it (done, or
 * the connection closes).
 *
 * Must be included after hs_conn.c.
 */
#include <errno.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

/* HS_FILE_NO_SENDFILE (a -D flag) selects the portable path on Linux too (tested that way). */
#if defined(__linux__) && !defined(HS_FILE_NO_SENDFILE)
#include <sys/sendfile.h>
#define HS_FILE_HAVE_SENDFILE 1
#else
#define HS_FILE_HAVE_SENDFILE 0
#endif

#include "hs_conn.h"

/* Most bytes one hs_file_flush call sends before yielding to other connections. */
#define HS_FILE_FLUSH_BUDGET (4u * 1024u * 1024u)
/* Most bytes one sendfile/pread call moves. */
#define HS_FILE_CHUNK (1024u * 1024u)
/* Bounce buffer of the pread + send fallback. */
#define HS_FILE_BOUNCE 65536u

#ifdef MSG_NOSIGNAL
#define HS_FILE_SEND_FLAGS MSG_NOSIGNAL
#else
#define HS_FILE_SEND_FLAGS 0
#endif

/* Close the file body's descriptor, if any; the connection has no file body afterwards. */
HS_API void hs_file_release(hs_conn *c)
{
    if (c->file_fd >= 0) {
        if (close(c->file_fd) < 0 && errno != EINTR) {
            /* EBADF/EIO on a read-only descriptor: nothing to retry, it is released */
        }
    }
    c->file_fd = -1;
    c->file_off = 0;
    c->file_left = 0;
}

/* Send len bytes of fd from off after the queued head; the connection now owns fd (closed when len is 0). */
HS_API void hs_file_attach(hs_conn *c, int fd, uint64_t off, uint64_t len)
{
    hs_file_release(c);
    if (len == 0) {
        if (fd >= 0 && close(fd) < 0 && errno != EINTR) {
            /* released either way */
        }
        return;
    }
    c->file_fd = fd;
    c->file_off = off;
    c->file_left = len;
}

/* One transfer of at most n bytes: bytes sent (> 0), 0 at end of file, -1 with errno. */
static ssize_t hs_file_send_once(hs_conn *c, size_t n)
{
#if HS_FILE_HAVE_SENDFILE
    off_t off = (off_t)c->file_off;
    return sendfile(c->fd, c->file_fd, &off, n);
#else
    char bounce[HS_FILE_BOUNCE];
    if (n > sizeof bounce)
        n = sizeof bounce;
    ssize_t got = pread(c->file_fd, bounce, n, (off_t)c->file_off);
    if (got <= 0)
        return got;
    /* Bytes read but not taken by the socket are read again on the next call (pread is positional). */
    return send(c->fd, bounce, (size_t)got, HS_FILE_SEND_FLAGS);
#endif
}

/*
 * Send the file body after the write queue: HS_FLUSH_DONE (all sent, fd
 * closed), HS_FLUSH_AGAIN (socket full or budget used: wait for writability),
 * HS_FLUSH_ERROR (socket error, or the file shrank: the response cannot be
 * completed and the connection must close).
 */
HS_API int hs_file_flush(hs_conn *c)
{
    uint64_t sent_now = 0;
    while (c->file_left > 0) {
        if (sent_now >= HS_FILE_FLUSH_BUDGET)
            return HS_FLUSH_AGAIN;
        size_t n = c->file_left < HS_FILE_CHUNK ? (size_t)c->file_left : HS_FILE_CHUNK;
        ssize_t sent = hs_file_send_once(c, n);
        if (sent < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return HS_FLUSH_AGAIN;
            return HS_FLUSH_ERROR;
        }
        if (sent == 0)
            return HS_FLUSH_ERROR; /* the file is shorter than the Content-Length sent */
        c->file_off += (uint64_t)sent;
        c->file_left -= (uint64_t)sent;
        sent_now += (uint64_t)sent;
    }
    hs_file_release(c);
    return HS_FLUSH_DONE;
}
