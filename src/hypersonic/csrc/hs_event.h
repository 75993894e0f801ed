/*
 * hs_event.h - one interface over the readiness-notification backends:
 * epoll (hs_event_epoll.c, Linux), kqueue (hs_event_kqueue.c, macOS/BSD) and
 * poll(2) (hs_event_poll.c, portable). Exactly one backend is compiled into a
 * module: the platform's native one, or poll when HS_EVENT_BACKEND_POLL is
 * defined (hypersonic.jit passes it for HYPERSONIC_EVENT_BACKEND=poll).
 * hs_event.c includes the right one.
 *
 * All registrations are level-triggered. A loop is named by an int that is a
 * real file descriptor (for poll, a descriptor reserved as the loop's handle),
 * so close_fd() and fork semantics work the same on every backend.
 */
#ifndef HS_EVENT_H
#define HS_EVENT_H

#include "hs_common.h"

#define HS_EV_READ 1   /* readable, or a peer hang-up with data to read */
#define HS_EV_WRITE 2  /* writable */
#define HS_EV_ERROR 4  /* error or hang-up: EPOLLERR/EPOLLHUP, EV_EOF with error, POLLERR/POLLHUP/POLLNVAL */

typedef struct hs_event {
    int fd;
    int flags; /* HS_EV_* bits */
} hs_event;

/* "epoll", "kqueue" or "poll": the backend compiled in. */
HS_API const char *hs_ev_backend(void);
/* A new loop, or -1 (errno set). */
HS_API int hs_ev_create(void);
/* Watch fd for `flags` (HS_EV_READ and/or HS_EV_WRITE). 0, or -1 (errno). */
HS_API int hs_ev_add(int loop, int fd, int flags);
/* Change what fd is watched for. 0, or -1. */
HS_API int hs_ev_mod(int loop, int fd, int flags);
/* Stop watching fd. 0, or -1. Closing an fd removes it too (call this first on poll/kqueue for clean state). */
HS_API int hs_ev_del(int loop, int fd);
/*
 * Wait up to timeout_ms (-1: forever) and store at most max events in out.
 * Returns the number stored (0 on timeout or EINTR), or -1 on error.
 */
HS_API int hs_ev_wait(int loop, hs_event *out, int max, int timeout_ms);
/* 1 when fd is a loop made by hs_ev_create (used by close_fd to free poll state). */
HS_API int hs_ev_is_loop(int fd);
/*
 * Forget fd in every loop of this module, as closing it does on epoll/kqueue
 * (the poll backend needs this; a no-op elsewhere). Call before close(fd) or
 * when an accepted fd reuses the number of one closed behind our back.
 */
HS_API void hs_ev_forget_fd(int fd);
/* Release the loop and close its descriptor. 0, or -1. */
HS_API int hs_ev_close(int loop);

#endif /* HS_EVENT_H */
