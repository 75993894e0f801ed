/*
 * hs_event_kqueue.c - the kqueue(2) backend (macOS, FreeBSD, OpenBSD,
 * NetBSD). Included by hs_event.c only; see hs_event.h for the contract.
 *
 * One descriptor may have an EVFILT_READ and an EVFILT_WRITE filter; both are
 * level-triggered (no EV_CLEAR). kevent() reports them as separate entries;
 * hs_ev_wait merges consecutive entries for the same fd into one hs_event.
 * EV_EOF on the read filter means the peer closed: reported as HS_EV_READ (the
 * EOF is read by recv) plus HS_EV_ERROR when the kernel gives an error code
 * in fflags. A change that fails comes back with EV_ERROR and the errno in
 * data; every kevent() call that registers changes asks for those receipts.
 * hs_ev_add/hs_ev_mod first ask the kernel whether fd is registered, so they
 * fail like epoll's (EEXIST / ENOENT); a registration with no flags registers
 * nothing (kqueue has no empty filter), unlike epoll.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/types.h>
#include <sys/event.h>
#include <sys/time.h>
#include <unistd.h>

#include "hs_event.h"

#ifndef EV_RECEIPT
#error "this kqueue has no EV_RECEIPT: build with HYPERSONIC_EVENT_BACKEND=poll"
#endif

/* Kernel events fetched per kevent() wait (the caller's max caps it further). */
#define HS_KQUEUE_BATCH 512
/* Milliseconds per second, nanoseconds per millisecond (timeout conversion). */
#define HS_MS_PER_S 1000
#define HS_NS_PER_MS 1000000L

/* Change calls never wait: with EV_RECEIPT they return at once anyway. */
static const struct timespec hs_kq_no_wait = {0, 0};

HS_API const char *hs_ev_backend(void) { return "kqueue"; }

HS_API int hs_ev_create(void)
{
    int loop = kqueue();
    if (loop < 0)
        return -1;
    int fdflags = fcntl(loop, F_GETFD);
    if (fdflags < 0 || fcntl(loop, F_SETFD, fdflags | FD_CLOEXEC) < 0 || hs_ev_mark_loop(loop, 1) < 0) {
        int saved = errno;
        (void)close(loop);
        errno = saved;
        return -1;
    }
    return loop;
}

/*
 * Apply up to two changes and collect their receipts (EV_RECEIPT makes
 * kevent() return one entry per change, with data = 0 or an errno).
 * A receipt whose errno equals ignore_errno is not a failure. Returns 0, or
 * -1 with errno from the first real failure.
 */
static int hs_kq_apply(int loop, struct kevent *changes, int n, int ignore_errno)
{
    struct kevent receipts[2];
    for (int i = 0; i < n; i++)
        changes[i].flags |= EV_RECEIPT;
    int got;
    do {
        got = kevent(loop, changes, n, receipts, n, &hs_kq_no_wait);
    } while (got < 0 && errno == EINTR);
    if (got < 0)
        return -1;
    for (int i = 0; i < got; i++) {
        if ((receipts[i].flags & EV_ERROR) && receipts[i].data != 0 && receipts[i].data != ignore_errno) {
            errno = (int)receipts[i].data;
            return -1;
        }
    }
    return 0;
}

/*
 * 1 when fd has a read or write filter in loop, 0 when it has none, -1 on
 * error. EV_ENABLE without EV_ADD fails with ENOENT for an absent filter and
 * is a no-op for a present one (filters here are never disabled), so this
 * asks the kernel without changing anything: no user-space registry that
 * could go stale when an fd is closed behind our back.
 */
static int hs_kq_registered(int loop, int fd)
{
    struct kevent probes[2];
    struct kevent receipts[2];
    EV_SET(&probes[0], (uintptr_t)fd, EVFILT_READ, EV_ENABLE | EV_RECEIPT, 0, 0, NULL);
    EV_SET(&probes[1], (uintptr_t)fd, EVFILT_WRITE, EV_ENABLE | EV_RECEIPT, 0, 0, NULL);
    int got;
    do {
        got = kevent(loop, probes, 2, receipts, 2, &hs_kq_no_wait);
    } while (got < 0 && errno == EINTR);
    if (got < 0)
        return -1;
    int present = 0;
    for (int i = 0; i < got; i++) {
        if (!(receipts[i].flags & EV_ERROR) || receipts[i].data == 0)
            present = 1;
        else if (receipts[i].data != ENOENT) {
            errno = (int)receipts[i].data;
            return -1;
        }
    }
    return present;
}

/* Register exactly the filters in flags and remove the others. */
static int hs_kq_set(int loop, int fd, int flags, int adding)
{
    /* Same contract as epoll: add fails with EEXIST when fd is registered,
     * mod with ENOENT when it is not. */
    int present = hs_kq_registered(loop, fd);
    if (present < 0)
        return -1;
    if (adding && present) {
        errno = EEXIST;
        return -1;
    }
    if (!adding && !present) {
        errno = ENOENT;
        return -1;
    }
    struct kevent changes[2];
    int n = 0;
    if (flags & HS_EV_READ)
        EV_SET(&changes[n++], (uintptr_t)fd, EVFILT_READ, EV_ADD | EV_ENABLE, 0, 0, NULL);
    else if (!adding)
        EV_SET(&changes[n++], (uintptr_t)fd, EVFILT_READ, EV_DELETE, 0, 0, NULL);
    if (flags & HS_EV_WRITE)
        EV_SET(&changes[n++], (uintptr_t)fd, EVFILT_WRITE, EV_ADD | EV_ENABLE, 0, 0, NULL);
    else if (!adding)
        EV_SET(&changes[n++], (uintptr_t)fd, EVFILT_WRITE, EV_DELETE, 0, 0, NULL);
    if (n == 0)
        return 0;
    return hs_kq_apply(loop, changes, n, ENOENT); /* deleting an absent filter is fine */
}

HS_API int hs_ev_add(int loop, int fd, int flags) { return hs_kq_set(loop, fd, flags, 1); }

HS_API int hs_ev_mod(int loop, int fd, int flags) { return hs_kq_set(loop, fd, flags, 0); }

HS_API int hs_ev_del(int loop, int fd)
{
    struct kevent changes[2];
    struct kevent receipts[2];
    EV_SET(&changes[0], (uintptr_t)fd, EVFILT_READ, EV_DELETE | EV_RECEIPT, 0, 0, NULL);
    EV_SET(&changes[1], (uintptr_t)fd, EVFILT_WRITE, EV_DELETE | EV_RECEIPT, 0, 0, NULL);
    int got;
    do {
        got = kevent(loop, changes, 2, receipts, 2, &hs_kq_no_wait);
    } while (got < 0 && errno == EINTR);
    if (got < 0)
        return -1;
    int removed = 0;
    for (int i = 0; i < got; i++) {
        if (!(receipts[i].flags & EV_ERROR) || receipts[i].data == 0)
            removed++;
        else if (receipts[i].data != ENOENT) {
            errno = (int)receipts[i].data;
            return -1;
        }
    }
    if (!removed) { /* neither filter was registered: same as epoll's ENOENT */
        errno = ENOENT;
        return -1;
    }
    return 0;
}

HS_API int hs_ev_wait(int loop, hs_event *out, int max, int timeout_ms)
{
    struct kevent events[HS_KQUEUE_BATCH];
    struct timespec ts;
    struct timespec *tsp = NULL;
    if (max <= 0) {
        errno = EINVAL;
        return -1;
    }
    if (max > HS_KQUEUE_BATCH)
        max = HS_KQUEUE_BATCH;
    if (timeout_ms >= 0) {
        ts.tv_sec = timeout_ms / HS_MS_PER_S;
        ts.tv_nsec = (long)(timeout_ms % HS_MS_PER_S) * HS_NS_PER_MS;
        tsp = &ts;
    }
    int got = kevent(loop, NULL, 0, events, max, tsp);
    if (got < 0)
        return errno == EINTR ? 0 : -1;
    int n = 0;
    for (int i = 0; i < got; i++) {
        int fd = (int)events[i].ident;
        int flags = 0;
        if (events[i].flags & EV_ERROR)
            flags |= HS_EV_ERROR;
        else if (events[i].filter == EVFILT_READ) {
            flags |= HS_EV_READ;
            if ((events[i].flags & EV_EOF) && events[i].fflags != 0)
                flags |= HS_EV_ERROR;
        } else if (events[i].filter == EVFILT_WRITE) {
            flags |= HS_EV_WRITE;
            if ((events[i].flags & EV_EOF) && events[i].fflags != 0)
                flags |= HS_EV_ERROR;
        }
        if (n > 0 && out[n - 1].fd == fd)
            out[n - 1].flags |= flags;
        else {
            out[n].fd = fd;
            out[n].flags = flags;
            n++;
        }
    }
    return n;
}

/* kqueue drops a descriptor's filters when it is closed. */
HS_API void hs_ev_forget_fd(int fd) { (void)fd; }

HS_API int hs_ev_close(int loop)
{
    (void)hs_ev_mark_loop(loop, 0);
    return close(loop) < 0 && errno != EINTR ? -1 : 0;
}
