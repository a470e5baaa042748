/*
 * The platform interface, Linux's side: the calls of os.h that need
 * _GNU_SOURCE (which the portable files do not define).
 */
#define _GNU_SOURCE
#include <sys/socket.h>

#include "os.h"

int weft__os_socket(int domain, int type)
{
    return socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
}

int weft__os_accept(int fd)
{
    return accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
}
