/*
 * weft networking and streams (included by <weft.h>).
 *
 * Every call marked SUSPENSION POINT suspends only the calling coroutine
 * while it waits; -EPERM outside a coroutine, -ECANCELED when the caller is
 * cancelled.  Deadlines are absolute on weft_now(); WEFT_FOREVER for none;
 * -ETIMEDOUT when one passes.  Descriptors returned are non-blocking and
 * close-on-exec.  Name resolution never blocks a worker (numeric addresses
 * are parsed in place, names are resolved on the runtime's own blocking
 * pool); an unknown name is -ENOENT.
 *
 * Descriptors a coroutine waits on must be closed with weft_close, which
 * wakes every coroutine waiting on them with -EBADF.
 */
#ifndef WEFT_IO_H
#define WEFT_IO_H

#ifndef WEFT_H
#error "include <weft.h>"
#endif

#include <sys/socket.h>

enum { WEFT_READABLE = 1, WEFT_WRITABLE = 2 };

/* SUSPENSION POINT: waits until fd is readable and/or writable (events, a
 * mask of WEFT_READABLE | WEFT_WRITABLE); returns the ready mask (> 0).
 * -EINVAL for a bad mask, -EBADF for a bad fd or when weft_close closes it. */
WEFT_API int     weft_wait_fd(int fd, int events, int64_t deadline);
/* Listening TCP socket (SO_REUSEADDR); host NULL: all addresses; port "0":
 * an ephemeral port (see weft_local_port); backlog <= 0: SOMAXCONN.
 * fd or -errno.  Not a suspension point for numeric hosts. */
WEFT_API int     weft_tcp_listen(const char *host, const char *port, int backlog);
WEFT_API int     weft_local_port(int fd);            /* bound port or -errno */
/* SUSPENSION POINT: an accepted connection (TCP_NODELAY set) or -errno
 * (-EMFILE when out of descriptors: wait and retry).  A connection aborted
 * before it was accepted is skipped; -ECONNABORTED comes only from
 * WEFT_FAULTS=accept (docs/testing.md). */
WEFT_API int     weft_accept(int listen_fd, int64_t deadline);
/* SUSPENSION POINT: a connected TCP socket (tries each address of host). */
WEFT_API int     weft_tcp_connect(const char *host, const char *port, int64_t deadline);
/* SUSPENSION POINT: waits for at least one byte; bytes read, 0 at end of
 * stream, or -errno.  On a datagram or seqpacket socket each call returns
 * one message (truncated to n, the rest of it dropped, as recv does). */
WEFT_API ssize_t weft_read(int fd, void *buf, size_t n, int64_t deadline);
/* SUSPENSION POINT: writes all n bytes (n) or returns an error (-EPIPE when
 * the peer is gone; never SIGPIPE on sockets).  Bytes may have been written
 * before an error. */
WEFT_API ssize_t weft_write(int fd, const void *buf, size_t n, int64_t deadline);
/* Closes fd; coroutines waiting on it wake with -EBADF.  Any thread. */
WEFT_API int     weft_close(int fd);

/* (extension) UDP: a bound socket (host NULL: all addresses), a connected
 * one (SUSPENSION POINT for names), and datagram send / receive
 * (SUSPENSION POINTS). */
WEFT_API int     weft_udp_bind(const char *host, const char *port);
WEFT_API int     weft_udp_connect(const char *host, const char *port, int64_t deadline);
WEFT_API ssize_t weft_recvfrom(int fd, void *buf, size_t n, struct sockaddr *from,
                               socklen_t *fromlen, int64_t deadline);
WEFT_API ssize_t weft_sendto(int fd, const void *buf, size_t n, const struct sockaddr *to,
                             socklen_t tolen, int64_t deadline);
/* (extension) Unix domain stream sockets; read, write, accept, close and
 * streams work on them as on TCP.  -ENAMETOOLONG for a long path; connect
 * returns -EAGAIN when the listener's queue is full (retry later, as Go). */
WEFT_API int     weft_unix_listen(const char *path, int backlog);
WEFT_API int     weft_unix_connect(const char *path, int64_t deadline); /* SUSPENSION POINT */

/* ------------------------------------------------------------------ */
/* Streams and servers (asyncio StreamReader/StreamWriter, start_server) */
/* ------------------------------------------------------------------ */

typedef struct weft_stream weft_stream;

/* Takes the fd: a buffered reader and writer (64 KiB each).  NULL with
 * errno EBADF / ENOMEM. */
WEFT_API weft_stream *weft_stream_new(int fd);
/* SUSPENSION POINT: NULL with errno set (ETIMEDOUT, ECONNREFUSED, ...). */
WEFT_API weft_stream *weft_open_connection(const char *host, const char *port, int64_t deadline);
/* SUSPENSION POINT: reads through the next '\n' and returns the line's
 * length including it, NUL-terminating buf; 0 at end of stream with nothing
 * read; a last line without '\n' is returned as it is; -EMSGSIZE when the
 * line does not fit in cap - 1 bytes (that line is then discarded up to its
 * '\n'). */
WEFT_API ssize_t weft_stream_readline(weft_stream *s, char *buf, size_t cap, int64_t deadline);
/* SUSPENSION POINT: up to n bytes (what is buffered, else one read); 0 at
 * end of stream. */
WEFT_API ssize_t weft_stream_read(weft_stream *s, void *buf, size_t n, int64_t deadline);
/* SUSPENSION POINT: exactly n bytes, or -EPIPE when the stream ends first.
 * On a timeout or cancellation the bytes that came stay in the stream for
 * the next call (for n up to the 64 KiB buffer; a larger n consumes them). */
WEFT_API ssize_t weft_stream_readexactly(weft_stream *s, void *buf, size_t n, int64_t deadline);
/* Buffers; a SUSPENSION POINT only when the buffer is full and must be
 * flushed first. */
WEFT_API int     weft_stream_write(weft_stream *s, const void *buf, size_t n);
/* SUSPENSION POINT: sends everything buffered.  A drain interrupted by its
 * deadline or a cancellation remembers what it sent: the next one sends the
 * rest, every byte exactly once. */
WEFT_API int     weft_stream_drain(weft_stream *s, int64_t deadline);
WEFT_API int     weft_stream_fd(weft_stream *s);
/* Sends what it can without waiting, closes, frees. */
WEFT_API int     weft_stream_close(weft_stream *s);

typedef void (*weft_handler)(weft_stream *s, void *ctx);
typedef struct weft_server weft_server;

/* Listens on host:port and accepts at once, running handler(stream, ctx) in
 * a task of its own for each connection; the stream is closed when handler
 * returns.  Out of descriptors, it waits (5 ms up to 1 s) and retries.  NULL
 * with errno (EINVAL, EPERM without a runtime, EADDRINUSE, ...). */
WEFT_API weft_server *weft_start_server(const char *host, const char *port,
                                        weft_handler handler, void *ctx);
WEFT_API int  weft_server_port(weft_server *srv);
/* SUSPENSION POINT: until the server is closed (0) or the caller is
 * cancelled (-ECANCELED). */
WEFT_API int  weft_serve_forever(weft_server *srv);
/* SUSPENSION POINT: stops accepting, cancels the handlers and waits for
 * them, closes everything, frees srv; 0, also for a cancelled caller (a
 * closing call: see weft.h).  -EPERM outside a coroutine (nothing closed). */
WEFT_API int  weft_server_close(weft_server *srv);

/* ------------------------------------------------------------------ */
/* Files (aiofiles), extensions.  pread / pwrite go to the worker's own    */
/* io_uring where the kernel allows it (WEFT_IO_URING, default auto), the */
/* rest and every fallback to the runtime's own blocking pool; the worker */
/* goes on with other coroutines meanwhile (docs/networking.md, "Files"). */
/* ------------------------------------------------------------------ */

/* SUSPENSION POINTS (even when the data was in the page cache: the caller
 * yields once).  pread / pwrite: bytes moved or -errno (pwrite writes all
 * n bytes or fails; -ESPIPE for a pipe or socket, -EINVAL for a negative
 * offset).  weft_file_read: the whole file in *data (malloc'd,
 * the caller frees it; one extra byte is allocated), its length returned.
 * weft_file_write: creates or truncates path (mode as for open, e.g. 0644)
 * and writes n bytes.  A cancelled caller gets -ECANCELED once the system
 * call in flight returned (nothing half-reported: *data is untouched). */
WEFT_API ssize_t weft_pread(int fd, void *buf, size_t n, off_t off);
WEFT_API ssize_t weft_pwrite(int fd, const void *buf, size_t n, off_t off);
WEFT_API ssize_t weft_file_read(const char *path, void **data);
WEFT_API ssize_t weft_file_write(const char *path, const void *data, size_t n, int mode);

#endif
