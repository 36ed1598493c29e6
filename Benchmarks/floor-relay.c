// The floor of the keep-alive benchmark: the least any user-space TCP relay does per request on
// this machine. Not a proxy: no policy, no timeouts, no logs, blocking connects, and a send that
// would block waits. Benchmarks/bench.py runs it beside ums-balancer and HAProxy (--only
// keepalive,floor), so a run shows how far each proxy is from the floor, not only from each other.
//
//   floor-relay epoll|uring LISTEN_PORT NODE_PORT      (127.0.0.1 both)
//
// epoll: the same system calls per request as ums-balancer's relay (edge-triggered epoll_wait,
// one recv and one send per direction). uring: io_uring with multishot receives into a provided
// buffer ring and sends submitted in batches, no epoll and one io_uring_enter per batch, the way a
// completion-based executor would move bytes.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FD 65536
#define NO_PEER (-1)

static struct sockaddr_in node;
// peer[fd]: the other socket of fd's pair, NO_PEER once that one is closed.
static int peer[MAX_FD];

static void fail(const char *what) {
    perror(what);
    exit(1);
}

static int listen_on(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&address, sizeof address) != 0 || listen(fd, 4096) != 0) fail("listen");
    return fd;
}

// A node connection for an accepted client, both with TCP_NODELAY as the proxies set it.
static int pair_with_node(int client) {
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (fd < 0 || fd >= MAX_FD || client >= MAX_FD) fail("socket");
    if (connect(fd, (struct sockaddr *)&node, sizeof node) != 0) {
        close(fd);
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    peer[client] = fd;
    peer[fd] = client;
    return fd;
}

// One side ended (EOF or error): the other side is shut down, so it ends too and closes itself.
static void end(int fd) {
    int other = peer[fd];
    if (other != NO_PEER) {
        shutdown(other, SHUT_RDWR);
        peer[other] = NO_PEER;
    }
    close(fd);
}

static void send_all(int fd, const char *bytes, size_t count) {
    while (count > 0) {
        ssize_t sent = send(fd, bytes, count, MSG_NOSIGNAL);
        if (sent > 0) {
            bytes += sent;
            count -= (size_t)sent;
        } else if (sent < 0 && errno == EAGAIN) {
            struct pollfd writable = {.fd = fd, .events = POLLOUT};
            poll(&writable, 1, 1000);
        } else if (sent < 0 && errno == EINTR) {
            continue;
        } else {
            return;  // its own read reports the failure
        }
    }
}

static void run_epoll(int listener) {
    static char buffer[256 * 1024];
    struct epoll_event events[256], watch = {.events = EPOLLIN, .data.fd = listener};
    int epoll = epoll_create1(0);
    epoll_ctl(epoll, EPOLL_CTL_ADD, listener, &watch);
    for (;;) {
        int count = epoll_wait(epoll, events, 256, -1);
        for (int i = 0; i < count; i++) {
            int fd = events[i].data.fd;
            if (fd == listener) {
                int client;
                while ((client = accept4(listener, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    int other = pair_with_node(client);
                    if (other < 0) {
                        close(client);
                        continue;
                    }
                    fcntl(other, F_SETFL, O_NONBLOCK);
                    struct epoll_event a = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.fd = client};
                    struct epoll_event b = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.fd = other};
                    epoll_ctl(epoll, EPOLL_CTL_ADD, client, &a);
                    epoll_ctl(epoll, EPOLL_CTL_ADD, other, &b);
                }
                continue;
            }
            for (;;) {
                ssize_t got = recv(fd, buffer, sizeof buffer, 0);
                if (got > 0 && peer[fd] != NO_PEER) {
                    send_all(peer[fd], buffer, (size_t)got);
                    // A short read emptied the socket: the next edge says when there is more.
                    if ((size_t)got < sizeof buffer) break;
                } else if (got < 0 && errno == EAGAIN) {
                    break;
                } else if (!(got < 0 && errno == EINTR)) {
                    end(fd);
                    break;
                }
            }
        }
    }
}

#define BUFFERS 4096
#define BUFFER_SIZE 16384
#define BUFFER_GROUP 1
enum operation { ACCEPT = 1, RECEIVE, SEND };

static struct io_uring ring;
static struct io_uring_buf_ring *buffer_ring;
static char *buffers;

// user_data: the operation, the socket, and for a send the buffer it sends from.
static __u64 tag(enum operation op, int fd, int buffer) {
    return (__u64)op << 48 | (__u64)(unsigned)fd << 16 | (__u64)(unsigned)buffer;
}

static struct io_uring_sqe *next_entry(void) {
    struct io_uring_sqe *entry = io_uring_get_sqe(&ring);
    if (entry == NULL) {
        io_uring_submit(&ring);
        entry = io_uring_get_sqe(&ring);
    }
    return entry;
}

static void receive(int fd) {
    struct io_uring_sqe *entry = next_entry();
    io_uring_prep_recv_multishot(entry, fd, NULL, 0, 0);
    entry->flags |= IOSQE_BUFFER_SELECT;
    entry->buf_group = BUFFER_GROUP;
    io_uring_sqe_set_data64(entry, tag(RECEIVE, fd, 0));
}

static void give_back(int buffer) {
    io_uring_buf_ring_add(buffer_ring, buffers + (size_t)buffer * BUFFER_SIZE, BUFFER_SIZE, buffer,
                          io_uring_buf_ring_mask(BUFFERS), 0);
    io_uring_buf_ring_advance(buffer_ring, 1);
}

static void run_uring(int listener) {
    struct io_uring_params params = {.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_CQSIZE,
                                     .cq_entries = 16384};
    int error = io_uring_queue_init_params(4096, &ring, &params);
    if (error != 0) {
        fprintf(stderr, "io_uring_queue_init: %s\n", strerror(-error));
        exit(1);
    }
    if (posix_memalign((void **)&buffer_ring, 4096, BUFFERS * sizeof(struct io_uring_buf)) != 0) fail("buffer ring");
    buffers = malloc((size_t)BUFFERS * BUFFER_SIZE);
    if (buffers == NULL) fail("buffers");
    io_uring_buf_ring_init(buffer_ring);
    struct io_uring_buf_reg registration = {.ring_addr = (unsigned long)buffer_ring, .ring_entries = BUFFERS, .bgid = BUFFER_GROUP};
    if ((error = io_uring_register_buf_ring(&ring, &registration, 0)) != 0) {
        fprintf(stderr, "io_uring_register_buf_ring: %s\n", strerror(-error));
        exit(1);
    }
    for (int i = 0; i < BUFFERS; i++) give_back(i);
    struct io_uring_sqe *accepting = next_entry();
    io_uring_prep_multishot_accept(accepting, listener, NULL, NULL, 0);
    io_uring_sqe_set_data64(accepting, tag(ACCEPT, listener, 0));
    for (;;) {
        io_uring_submit_and_wait(&ring, 1);
        struct io_uring_cqe *completion;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, completion) {
            seen++;
            __u64 data = completion->user_data;
            int op = (int)(data >> 48), fd = (int)((data >> 16) & 0xffffffff), buffer = (int)(data & 0xffff);
            int result = completion->res;
            if (op == ACCEPT) {
                if (!(completion->flags & IORING_CQE_F_MORE)) fail("multishot accept ended");
                if (result < 0) continue;
                int other = pair_with_node(result);
                if (other < 0) {
                    close(result);
                    continue;
                }
                receive(result);
                receive(other);
            } else if (op == RECEIVE) {
                if (result > 0) {
                    int chosen = (int)(completion->flags >> IORING_CQE_BUFFER_SHIFT);
                    if (peer[fd] == NO_PEER) {
                        give_back(chosen);
                    } else {
                        struct io_uring_sqe *entry = next_entry();
                        io_uring_prep_send(entry, peer[fd], buffers + (size_t)chosen * BUFFER_SIZE, (size_t)result, MSG_NOSIGNAL | MSG_WAITALL);
                        io_uring_sqe_set_data64(entry, tag(SEND, peer[fd], chosen));
                    }
                    if (!(completion->flags & IORING_CQE_F_MORE)) receive(fd);
                } else if (result == -ENOBUFS) {
                    receive(fd);
                } else if (!(completion->flags & IORING_CQE_F_MORE)) {
                    // Sends already queued for this pair go out before either number is reused.
                    io_uring_submit(&ring);
                    end(fd);
                }
            } else if (op == SEND) {
                give_back(buffer);
            }
        }
        io_uring_cq_advance(&ring, seen);
    }
}

int main(int argc, char **argv) {
    if (argc != 4 || (strcmp(argv[1], "epoll") != 0 && strcmp(argv[1], "uring") != 0)) {
        fprintf(stderr, "usage: floor-relay epoll|uring LISTEN_PORT NODE_PORT\n");
        return 2;
    }
    node = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(atoi(argv[3])), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int i = 0; i < MAX_FD; i++) peer[i] = NO_PEER;
    int listener = listen_on(atoi(argv[2]));
    if (strcmp(argv[1], "epoll") == 0) run_epoll(listener);
    else run_uring(listener);
    return 0;
}
