/*
 * hs_event_poll.c - the portable poll(2) backend. Included by hs_event.c only;
 * see hs_event.h for the contract.
 *
 * A loop's handle is a real descriptor reserved for it (/dev/null opened
 * close-on-exec), so loop handles behave like epoll/kqueue descriptors: unique
 * while open, closable, never reused by a socket meanwhile. The handle indexes
 * hs_poll_loops; each loop keeps a dense pollfd array plus an fd -> slot index
 * so add/mod/del are O(1). Waits scan from a rotating start so that, when more
 * descriptors are ready than the caller takes, none starves.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hs_event.h"

/* First capacity of a loop's pollfd array and of its fd index. */
#define HS_POLL_MIN_FDS 64
/* Slot index value meaning "fd not registered". */
#define HS_POLL_NO_SLOT (-1)

typedef struct hs_poll_loop {
    struct pollfd *fds; /* dense: fds[0..count) */
    size_t count;
    size_t cap;
    int *slot_of;       /* slot_of[fd]: index in fds, or HS_POLL_NO_SLOT */
    size_t slot_size;
    size_t next_start;  /* rotation for fairness */
} hs_poll_loop;

static hs_poll_loop **hs_poll_loops; /* indexed by loop handle */
static size_t hs_poll_loops_size;

static hs_poll_loop *hs_poll_get(int loop)
{
    if (loop < 0 || (size_t)loop >= hs_poll_loops_size || !hs_poll_loops[loop]) {
        errno = EBADF;
        return NULL;
    }
    return hs_poll_loops[loop];
}

static void hs_poll_free(hs_poll_loop *l)
{
    free(l->fds);
    free(l->slot_of);
    free(l);
}

HS_API const char *hs_ev_backend(void) { return "poll"; }

HS_API int hs_ev_create(void)
{
    int handle = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (handle < 0)
        return -1;
    if ((size_t)handle >= hs_poll_loops_size) {
        size_t size = hs_poll_loops_size ? hs_poll_loops_size : HS_POLL_MIN_FDS;
        while (size <= (size_t)handle)
            size *= 2;
        hs_poll_loop **grown = (hs_poll_loop **)realloc(hs_poll_loops, size * sizeof *grown);
        if (!grown)
            goto fail_nomem;
        memset(grown + hs_poll_loops_size, 0, (size - hs_poll_loops_size) * sizeof *grown);
        hs_poll_loops = grown;
        hs_poll_loops_size = size;
    }
    if (hs_poll_loops[handle]) { /* stale: the handle was closed with close(2), not hs_ev_close */
        hs_poll_free(hs_poll_loops[handle]);
        hs_poll_loops[handle] = NULL;
    }
    hs_poll_loop *l = (hs_poll_loop *)calloc(1, sizeof *l);
    if (!l)
        goto fail_nomem;
    if (hs_ev_mark_loop(handle, 1) < 0) {
        free(l);
        goto fail_nomem;
    }
    hs_poll_loops[handle] = l;
    return handle;

fail_nomem:
    (void)close(handle);
    errno = ENOMEM;
    return -1;
}

static short hs_poll_mask(int flags)
{
    short mask = 0;
    if (flags & HS_EV_READ)
        mask |= POLLIN;
    if (flags & HS_EV_WRITE)
        mask |= POLLOUT;
    return mask;
}

static int hs_poll_slot(const hs_poll_loop *l, int fd)
{
    if (fd < 0 || (size_t)fd >= l->slot_size)
        return HS_POLL_NO_SLOT;
    return l->slot_of[fd];
}

HS_API int hs_ev_add(int loop, int fd, int flags)
{
    hs_poll_loop *l = hs_poll_get(loop);
    if (!l)
        return -1;
    if (fd < 0 || fd == loop || fcntl(fd, F_GETFD) < 0) { /* match epoll: EBADF for a closed fd */
        errno = fd == loop ? EINVAL : EBADF;
        return -1;
    }
    if (hs_poll_slot(l, fd) != HS_POLL_NO_SLOT) {
        errno = EEXIST;
        return -1;
    }
    if ((size_t)fd >= l->slot_size) {
        size_t size = l->slot_size ? l->slot_size : HS_POLL_MIN_FDS;
        while (size <= (size_t)fd)
            size *= 2;
        int *grown = (int *)realloc(l->slot_of, size * sizeof *grown);
        if (!grown) {
            errno = ENOMEM;
            return -1;
        }
        for (size_t i = l->slot_size; i < size; i++)
            grown[i] = HS_POLL_NO_SLOT;
        l->slot_of = grown;
        l->slot_size = size;
    }
    if (l->count == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : HS_POLL_MIN_FDS;
        struct pollfd *grown = (struct pollfd *)realloc(l->fds, cap * sizeof *grown);
        if (!grown) {
            errno = ENOMEM;
            return -1;
        }
        l->fds = grown;
        l->cap = cap;
    }
    l->fds[l->count].fd = fd;
    l->fds[l->count].events = hs_poll_mask(flags);
    l->fds[l->count].revents = 0;
    l->slot_of[fd] = (int)l->count;
    l->count++;
    return 0;
}

HS_API int hs_ev_mod(int loop, int fd, int flags)
{
    hs_poll_loop *l = hs_poll_get(loop);
    if (!l)
        return -1;
    int slot = hs_poll_slot(l, fd);
    if (slot == HS_POLL_NO_SLOT) {
        errno = ENOENT;
        return -1;
    }
    l->fds[slot].events = hs_poll_mask(flags);
    return 0;
}

/* Remove fd from l (swap the last slot into its place). 0, or -1 when absent. */
static int hs_poll_remove(hs_poll_loop *l, int fd)
{
    int slot = hs_poll_slot(l, fd);
    if (slot == HS_POLL_NO_SLOT)
        return -1;
    size_t last = l->count - 1;
    if ((size_t)slot != last) {
        l->fds[slot] = l->fds[last];
        l->slot_of[l->fds[slot].fd] = slot;
    }
    l->slot_of[fd] = HS_POLL_NO_SLOT;
    l->count--;
    return 0;
}

HS_API int hs_ev_del(int loop, int fd)
{
    hs_poll_loop *l = hs_poll_get(loop);
    if (!l)
        return -1;
    if (hs_poll_remove(l, fd) < 0) {
        errno = ENOENT;
        return -1;
    }
    return 0;
}

HS_API int hs_ev_wait(int loop, hs_event *out, int max, int timeout_ms)
{
    hs_poll_loop *l = hs_poll_get(loop);
    if (!l)
        return -1;
    if (max <= 0) {
        errno = EINVAL;
        return -1;
    }
    int ready = poll(l->fds, (nfds_t)l->count, timeout_ms);
    if (ready < 0)
        return errno == EINTR ? 0 : -1;
    int n = 0;
    size_t count = l->count;
    size_t start = count ? l->next_start % count : 0;
    for (size_t k = 0; k < count && ready > 0 && n < max; k++) {
        size_t i = (start + k) % count;
        short re = l->fds[i].revents;
        if (!re)
            continue;
        ready--;
        int flags = 0;
        if (re & (POLLIN | POLLPRI))
            flags |= HS_EV_READ;
        if (re & POLLOUT)
            flags |= HS_EV_WRITE;
        if (re & (POLLERR | POLLHUP | POLLNVAL))
            flags |= HS_EV_ERROR;
        out[n].fd = l->fds[i].fd;
        out[n].flags = flags;
        n++;
        l->next_start = i + 1;
    }
    return n;
}

/* Drop fd from every loop (what closing does on epoll/kqueue). */
HS_API void hs_ev_forget_fd(int fd)
{
    for (size_t h = 0; h < hs_poll_loops_size; h++)
        if (hs_poll_loops[h])
            (void)hs_poll_remove(hs_poll_loops[h], fd);
}

HS_API int hs_ev_close(int loop)
{
    hs_poll_loop *l = hs_poll_get(loop);
    if (!l)
        return -1;
    hs_poll_free(l);
    hs_poll_loops[loop] = NULL;
    (void)hs_ev_mark_loop(loop, 0);
    return close(loop) < 0 && errno != EINTR ? -1 : 0;
}
