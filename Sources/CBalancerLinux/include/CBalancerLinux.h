// The Linux calls the relay makes that Swift's Glibc module does not export.
#ifndef C_BALANCER_LINUX_H
#define C_BALANCER_LINUX_H
#ifdef __linux__
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

// accept4 is a GNU extension the Glibc module leaves out.
extern int accept4(int fd, struct sockaddr *address, socklen_t *length, int flags);

// pthread_setname_np is a GNU extension too.
#include <pthread.h>
extern int pthread_setname_np(pthread_t thread, const char *name);

static inline int cbl_name_this_thread(const char *name) {
    return pthread_setname_np(pthread_self(), name);
}

static inline int cbl_accept4(int fd, struct sockaddr *address, socklen_t *length, int flags) {
    return accept4(fd, address, length, flags);
}

// splice(2), pipe2(2) and F_SETPIPE_SZ are GNU extensions too (the relay's splice path).
#include <fcntl.h>
#include <unistd.h>
extern ssize_t splice(int in, loff_t *in_offset, int out, loff_t *out_offset, size_t length, unsigned int flags);
extern int pipe2(int fds[2], int flags);

/// Moves up to `length` bytes from `in` to `out` (one of them a pipe) inside the kernel.
static inline ssize_t cbl_splice(int in, int out, size_t length) {
    return splice(in, 0, out, 0, length, 1 /* SPLICE_F_MOVE */ | 2 /* SPLICE_F_NONBLOCK */);
}

// recv(2) and send(2) as the relay loops call them: straight through syscall(2), because glibc's
// wrappers are cancellation points, and in a process with more than one thread each call pays for
// enabling and disabling asynchronous cancellation (two atomic operations; ~4% of the relay's user
// time per keep-alive request). Nothing ever cancels a relay thread.
#include <sys/syscall.h>

static inline ssize_t cbl_recv(int fd, void *buffer, size_t length, int flags) {
    return syscall(SYS_recvfrom, fd, buffer, length, flags, NULL, NULL);
}

static inline ssize_t cbl_send(int fd, const void *buffer, size_t length, int flags) {
    return syscall(SYS_sendto, fd, buffer, length, flags, NULL, 0);
}

static inline int cbl_pipe2(int fds[2], int flags) {
    return pipe2(fds, flags);
}

/// Sets a pipe's capacity (F_SETPIPE_SZ); the size granted, or -1.
static inline int cbl_set_pipe_size(int fd, int size) {
    return fcntl(fd, 1031 /* F_SETPIPE_SZ */, size);
}
#endif
#endif
