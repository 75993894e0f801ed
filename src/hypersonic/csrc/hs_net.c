/*
 * hs_net.c - listening sockets and accept(2), shared by hypersonic.socket and
 * the server loop. See hs_net.h for the contract.
 *
 * Every socket made here is non-blocking and close-on-exec from birth where
 * the platform allows it (SOCK_NONBLOCK|SOCK_CLOEXEC, accept4), else right
 * after with fcntl. Accepted sockets get TCP_NODELAY (responses are written
 * whole, so Nagle only adds latency) and, on Apple systems, SO_NOSIGPIPE.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include "hs_net.h"

/* Highest TCP port number. */
#define HS_PORT_MAX 65535
/* Room for a port number as decimal text, with its NUL. */
#define HS_PORT_TEXT 8

#if defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC)
#define HS_HAVE_SOCK_FLAGS 1
#endif
/*
 * accept4 is declared by glibc only under _GNU_SOURCE, which must be defined
 * before the first system header (Python.h does, and modules include it
 * first); when it was not, fall back to accept + fcntl.
 */
#if defined(HS_HAVE_SOCK_FLAGS) && ((defined(__linux__) && (defined(__USE_GNU) || !defined(__GLIBC__))) || \
                                    defined(__FreeBSD__) || defined(__NetBSD__) || defined(__OpenBSD__) || \
                                    defined(__DragonFly__))
#define HS_HAVE_ACCEPT4 1
#endif

/* Make fd non-blocking and close-on-exec. 0, or -1 (errno). */
HS_API int hs_set_nonblock_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -1;
    int fdfl = fcntl(fd, F_GETFD);
    if (fdfl < 0 || fcntl(fd, F_SETFD, fdfl | FD_CLOEXEC) < 0)
        return -1;
    return 0;
}

static int hs_set_int_opt(int fd, int level, int name, int value)
{
    return setsockopt(fd, level, name, &value, (socklen_t)sizeof value);
}

/* socket + options + bind + listen for one address. The fd, or -1 (errno, closed). */
static int hs_listen_on(const struct sockaddr *addr, socklen_t addrlen, int family, int backlog)
{
#ifdef HS_HAVE_SOCK_FLAGS
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
#else
    int fd = socket(family, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    if (hs_set_nonblock_cloexec(fd) < 0)
        goto fail;
#endif
    if (hs_set_int_opt(fd, SOL_SOCKET, SO_REUSEADDR, 1) < 0)
        goto fail;
#ifdef SO_REUSEPORT
    if (hs_set_int_opt(fd, SOL_SOCKET, SO_REUSEPORT, 1) < 0)
        goto fail;
#endif
#ifdef IPV6_V6ONLY
    /* "::" means both stacks; a specific IPv6 address stays IPv6 only by its nature. */
    if (family == AF_INET6 && hs_set_int_opt(fd, IPPROTO_IPV6, IPV6_V6ONLY, 0) < 0)
        goto fail;
#endif
    if (bind(fd, addr, addrlen) < 0)
        goto fail;
    if (listen(fd, backlog) < 0)
        goto fail;
    return fd;
fail:;
    int saved = errno;
    (void)close(fd);
    errno = saved;
    return -1;
}

HS_API int hs_listen_tcp(const char *host, int port, int backlog)
{
    if (port < 0 || port > HS_PORT_MAX || backlog < 0) {
        errno = EINVAL;
        return -1;
    }
    if (!host || !*host) { /* the seed's behaviour: every IPv4 interface */
        struct sockaddr_in any4;
        memset(&any4, 0, sizeof any4);
        any4.sin_family = AF_INET;
        any4.sin_addr.s_addr = htonl(INADDR_ANY);
        any4.sin_port = htons((uint16_t)port);
        return hs_listen_on((const struct sockaddr *)&any4, (socklen_t)sizeof any4, AF_INET, backlog);
    }
    char port_text[HS_PORT_TEXT];
    (void)snprintf(port_text, sizeof port_text, "%d", port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    struct addrinfo *found = NULL;
    int rc = getaddrinfo(host, port_text, &hints, &found);
    if (rc != 0) {
        errno = rc == EAI_SYSTEM ? errno : EADDRNOTAVAIL;
        return -1;
    }
    int fd = -1;
    int last_errno = EADDRNOTAVAIL;
    for (struct addrinfo *ai = found; ai; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        fd = hs_listen_on(ai->ai_addr, ai->ai_addrlen, ai->ai_family, backlog);
        if (fd >= 0)
            break;
        last_errno = errno;
    }
    freeaddrinfo(found);
    if (fd < 0)
        errno = last_errno;
    return fd;
}

/* Per-connection options. Failures are harmless (the socket still works), so ignored. */
static void hs_tune_accepted(int fd)
{
    (void)hs_set_int_opt(fd, IPPROTO_TCP, TCP_NODELAY, 1);
#ifdef SO_NOSIGPIPE
    (void)hs_set_int_opt(fd, SOL_SOCKET, SO_NOSIGPIPE, 1);
#endif
}

HS_API int hs_accept(int listen_fd)
{
    if (listen_fd < 0) {
        errno = EBADF;
        return -1;
    }
    for (;;) {
#ifdef HS_HAVE_ACCEPT4
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
#else
        int fd = accept(listen_fd, NULL, NULL);
#endif
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return -1;
        }
#ifndef HS_HAVE_ACCEPT4
        if (hs_set_nonblock_cloexec(fd) < 0) {
            int saved = errno;
            (void)close(fd);
            errno = saved;
            return -1;
        }
#endif
        hs_tune_accepted(fd);
        return fd;
    }
}
