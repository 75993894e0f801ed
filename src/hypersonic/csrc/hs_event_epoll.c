/*
 * hs_event_epoll.c - the epoll(7) backend (Linux). Included by hs_event.c
 * only; see hs_event.h for the contract. Level-triggered; the loop handle is
 * the epoll descriptor itself. No state beyond the kernel's.
 */
#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "hs_event.h"

/* Kernel events fetched per epoll_wait (the caller's max caps it further). */
#define HS_EPOLL_BATCH 512

HS_API const char *hs_ev_backend(void) { return "epoll"; }

HS_API int hs_ev_create(void)
{
    int loop = epoll_create1(EPOLL_CLOEXEC);
    if (loop < 0)
        return -1;
    if (hs_ev_mark_loop(loop, 1) < 0) {
        int saved = errno;
        (void)close(loop);
        errno = saved;
        return -1;
    }
    return loop;
}

static uint32_t hs_epoll_mask(int flags)
{
    uint32_t mask = 0;
    if (flags & HS_EV_READ)
        mask |= EPOLLIN | EPOLLRDHUP;
    if (flags & HS_EV_WRITE)
        mask |= EPOLLOUT;
    return mask;
}

static int hs_epoll_ctl(int loop, int op, int fd, int flags)
{
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = hs_epoll_mask(flags);
    ev.data.fd = fd;
    return epoll_ctl(loop, op, fd, &ev) < 0 ? -1 : 0;
}

HS_API int hs_ev_add(int loop, int fd, int flags) { return hs_epoll_ctl(loop, EPOLL_CTL_ADD, fd, flags); }

HS_API int hs_ev_mod(int loop, int fd, int flags) { return hs_epoll_ctl(loop, EPOLL_CTL_MOD, fd, flags); }

/* A non-NULL event for kernels before 2.6.9, which required one for DEL. */
HS_API int hs_ev_del(int loop, int fd) { return hs_epoll_ctl(loop, EPOLL_CTL_DEL, fd, 0); }

HS_API int hs_ev_wait(int loop, hs_event *out, int max, int timeout_ms)
{
    struct epoll_event events[HS_EPOLL_BATCH];
    if (max <= 0) {
        errno = EINVAL;
        return -1;
    }
    if (max > HS_EPOLL_BATCH)
        max = HS_EPOLL_BATCH;
    int n = epoll_wait(loop, events, max, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -1;
    for (int i = 0; i < n; i++) {
        uint32_t e = events[i].events;
        int flags = 0;
        if (e & (EPOLLIN | EPOLLRDHUP | EPOLLPRI))
            flags |= HS_EV_READ;
        if (e & EPOLLOUT)
            flags |= HS_EV_WRITE;
        if (e & (EPOLLERR | EPOLLHUP))
            flags |= HS_EV_ERROR;
        out[i].fd = events[i].data.fd;
        out[i].flags = flags;
    }
    return n;
}

/* epoll drops a descriptor from every set when it is closed. */
HS_API void hs_ev_forget_fd(int fd) { (void)fd; }

HS_API int hs_ev_close(int loop)
{
    (void)hs_ev_mark_loop(loop, 0);
    return close(loop) < 0 && errno != EINTR ? -1 : 0;
}
