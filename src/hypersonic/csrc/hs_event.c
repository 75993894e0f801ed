/*
 * hs_event.c - picks the one readiness backend compiled into a module and
 * owns the small state every backend shares: the set of descriptors that are
 * loops made by hs_ev_create (so close_fd() can tell a loop from a socket).
 *
 * Selection (compile time): HS_EVENT_BACKEND_POLL forces poll(2);
 * HS_EVENT_BACKEND_EPOLL / HS_EVENT_BACKEND_KQUEUE force those (a build error
 * where the platform lacks them); otherwise epoll on Linux, kqueue on macOS
 * and the BSDs, poll elsewhere.
 *
 * Not thread-safe: a module's loops are driven from one thread at a time
 * (hypersonic.socket holds the GIL; the server runs one loop per process).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hs_event.h"

#if defined(HS_EVENT_BACKEND_POLL)
#define HS_EV_USE_POLL 1
#elif defined(HS_EVENT_BACKEND_EPOLL)
#define HS_EV_USE_EPOLL 1
#elif defined(HS_EVENT_BACKEND_KQUEUE)
#define HS_EV_USE_KQUEUE 1
#elif defined(__linux__)
#define HS_EV_USE_EPOLL 1
#elif defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__) || defined(__NetBSD__) || \
    defined(__DragonFly__)
#define HS_EV_USE_KQUEUE 1
#else
#define HS_EV_USE_POLL 1
#endif

/* First size of the loop-descriptor bitmap, in bytes (covers fds 0..1023). */
#define HS_EV_LOOPSET_MIN_BYTES 128

/* Bit per fd: 1 when the fd is a loop created by hs_ev_create in this module. */
static unsigned char *hs_ev_loopset;
static size_t hs_ev_loopset_bytes;

/* Record (on = 1) or forget (on = 0) that fd is a loop. 0, or -1 on ENOMEM. */
HS_API int hs_ev_mark_loop(int fd, int on)
{
    if (fd < 0)
        return -1;
    size_t byte = (size_t)fd / 8;
    if (byte >= hs_ev_loopset_bytes) {
        if (!on)
            return 0;
        size_t size = hs_ev_loopset_bytes ? hs_ev_loopset_bytes : HS_EV_LOOPSET_MIN_BYTES;
        while (size <= byte)
            size *= 2;
        unsigned char *grown = (unsigned char *)realloc(hs_ev_loopset, size);
        if (!grown) {
            errno = ENOMEM;
            return -1;
        }
        memset(grown + hs_ev_loopset_bytes, 0, size - hs_ev_loopset_bytes);
        hs_ev_loopset = grown;
        hs_ev_loopset_bytes = size;
    }
    unsigned char bit = (unsigned char)(1u << ((unsigned)fd % 8));
    if (on)
        hs_ev_loopset[byte] |= bit;
    else
        hs_ev_loopset[byte] &= (unsigned char)~bit;
    return 0;
}

HS_API int hs_ev_is_loop(int fd)
{
    if (fd < 0 || (size_t)fd / 8 >= hs_ev_loopset_bytes)
        return 0;
    return (hs_ev_loopset[(size_t)fd / 8] >> ((unsigned)fd % 8)) & 1;
}

#if defined(HS_EV_USE_POLL)
#include "hs_event_poll.c"
#elif defined(HS_EV_USE_EPOLL)
#include "hs_event_epoll.c"
#else
#include "hs_event_kqueue.c"
#endif
