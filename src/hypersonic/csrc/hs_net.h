/*
 * hs_net.h - listening sockets and accept, shared by hypersonic.socket and the
 * server loop.
 */
#ifndef HS_NET_H
#define HS_NET_H

#include "hs_common.h"

/* listen(2) backlog for every listening socket. */
#define HS_LISTEN_BACKLOG 4096

/*
 * A non-blocking, close-on-exec TCP listening socket bound to host:port with
 * SO_REUSEADDR and, where the platform has it, SO_REUSEPORT. host NULL or ""
 * means all IPv4 interfaces (INADDR_ANY, the seed's behaviour); "::" means
 * dual-stack IPv6; any literal IPv4/IPv6 address or resolvable name works.
 * Returns the fd, or -1 (errno set; the socket is closed).
 */
HS_API int hs_listen_tcp(const char *host, int port, int backlog);

/*
 * Accept one connection: the new fd is non-blocking, close-on-exec, with
 * TCP_NODELAY set. Returns the fd, or -1 (errno: EAGAIN when none is waiting;
 * EMFILE/ENFILE when out of descriptors; EINTR and ECONNABORTED are retried).
 */
HS_API int hs_accept(int listen_fd);

#endif /* HS_NET_H */
