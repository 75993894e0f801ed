/*
 * floor_server.c - the cheapest keep-alive HTTP server we can write, to measure
 * the floor of server CPU per request on this machine (issue 4: "a bare C epoll
 * server written only to find the floor"). Not a real server: it answers every
 * request with the same "Hello, World!" response, whatever was asked.
 *
 * Per readable connection: one recv(); count the complete request heads in it
 * (each ends with CRLFCRLF; a head split across reads is carried over by its
 * tail bytes only); one send() of that many copies of the fixed response
 * (pipelined requests answered in one write). Level-triggered epoll, no
 * epoll_ctl per request, no timers, no Date header. bench/run.py builds it with
 * cc -O2 and runs it as the "floor-c" server.
 *
 * Usage: floor_server PORT   (binds 127.0.0.1; SIGTERM/SIGINT stop it)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define FLOOR_MAX_EVENTS 512
#define FLOOR_BACKLOG 4096
#define FLOOR_READ_SIZE 65536
#define FLOOR_MAX_FDS 65536
#define FLOOR_MAX_PIPELINE 256 /* responses written per read at most */
#define FLOOR_PORT_MAX 65535
#define FLOOR_SEND_WAIT_MS 5000

static const char floor_response[] = "HTTP/1.1 200 OK\r\n"
                                     "Content-Type: text/plain\r\n"
                                     "Content-Length: 13\r\n"
                                     "\r\n"
                                     "Hello, World!";
#define FLOOR_RESPONSE_LEN (sizeof(floor_response) - 1)

/* How far into "\r\n\r\n" each connection's previous read ended (0..3). */
static unsigned char floor_match[FLOOR_MAX_FDS];
static char floor_read_buffer[FLOOR_READ_SIZE];
static char floor_write_buffer[FLOOR_MAX_PIPELINE * FLOOR_RESPONSE_LEN];
static volatile sig_atomic_t floor_stop;

static void floor_on_signal(int sig)
{
    (void)sig;
    floor_stop = 1;
}

/* Count CRLFCRLF terminators in buf, resuming the partial match in *state. */
static int floor_count_heads(const char *buf, size_t len, unsigned char *state)
{
    static const char terminator[] = "\r\n\r\n";
    int heads = 0;
    unsigned char s = *state;
    for (size_t i = 0; i < len; i++) {
        if (buf[i] == terminator[s]) {
            if (++s == 4) {
                heads++;
                s = 0;
            }
        } else {
            s = (buf[i] == '\r') ? 1 : 0;
        }
    }
    *state = s;
    return heads;
}

static void floor_close(int fd)
{
    if (fd < FLOOR_MAX_FDS)
        floor_match[fd] = 0;
    if (close(fd) < 0 && errno != EINTR)
        perror("close");
}

/* Write all of buf; on a full socket wait (poll) up to FLOOR_SEND_WAIT_MS each time. */
static int floor_send_all(int fd, const char *buf, size_t len)
{
    size_t sent = 0;
    while (sent < len) {
        ssize_t n = send(fd, buf + sent, len - sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                struct pollfd pfd = {.fd = fd, .events = POLLOUT};
                int ready = poll(&pfd, 1, FLOOR_SEND_WAIT_MS);
                if (ready > 0 || (ready < 0 && errno == EINTR))
                    continue;
                return -1; /* timed out or poll failed: give the connection up */
            }
            return -1;
        }
        sent += (size_t)n;
    }
    return 0;
}

static void floor_serve_client(int fd)
{
    ssize_t n = recv(fd, floor_read_buffer, sizeof floor_read_buffer, 0);
    if (n < 0) {
        if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        floor_close(fd);
        return;
    }
    if (n == 0 || fd >= FLOOR_MAX_FDS) {
        floor_close(fd);
        return;
    }
    int heads = floor_count_heads(floor_read_buffer, (size_t)n, &floor_match[fd]);
    while (heads > 0) {
        int batch = heads < FLOOR_MAX_PIPELINE ? heads : FLOOR_MAX_PIPELINE;
        if (floor_send_all(fd, floor_write_buffer, (size_t)batch * FLOOR_RESPONSE_LEN) < 0) {
            floor_close(fd);
            return;
        }
        heads -= batch;
    }
}

static int floor_listen(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        perror("socket");
        return -1;
    }
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) {
        perror("setsockopt");
        close(fd);
        return -1;
    }
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, FLOOR_BACKLOG) < 0) {
        perror("bind/listen");
        close(fd);
        return -1;
    }
    return fd;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    long port = strtol(argv[1], NULL, 10);
    if (port <= 0 || port > FLOOR_PORT_MAX) {
        fprintf(stderr, "floor_server: bad port %s\n", argv[1]);
        return 2;
    }
    for (int i = 0; i < FLOOR_MAX_PIPELINE; i++)
        memcpy(floor_write_buffer + (size_t)i * FLOOR_RESPONSE_LEN, floor_response, FLOOR_RESPONSE_LEN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = floor_on_signal;
    if (sigaction(SIGTERM, &sa, NULL) < 0 || sigaction(SIGINT, &sa, NULL) < 0) {
        perror("sigaction");
        return 1;
    }
    int listen_fd = floor_listen((int)port);
    if (listen_fd < 0)
        return 1;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        perror("epoll_create1");
        return 1;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = listen_fd};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, listen_fd, &ev) < 0) {
        perror("epoll_ctl");
        return 1;
    }
    struct epoll_event events[FLOOR_MAX_EVENTS];
    while (!floor_stop) {
        int n = epoll_wait(ep, events, FLOOR_MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd != listen_fd) {
                floor_serve_client(fd);
                continue;
            }
            for (;;) {
                int client = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (client < 0) {
                    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
                        perror("accept4");
                    break;
                }
                int one = 1;
                struct epoll_event cev = {.events = EPOLLIN, .data.fd = client};
                if (setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0 ||
                    epoll_ctl(ep, EPOLL_CTL_ADD, client, &cev) < 0) {
                    floor_close(client);
                    continue;
                }
            }
        }
    }
    close(ep);
    close(listen_fd);
    return 0;
}
