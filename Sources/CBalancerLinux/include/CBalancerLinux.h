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
#endif
#endif
