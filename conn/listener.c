/*
 * listener.c - listening sockets and the accept loop. Each loop has its
 * own socket per listener (SO_REUSEPORT), bound before privileges are
 * dropped, so the kernel spreads connections over the loops without a
 * shared accept lock. SO_REUSEPORT would also let any other socket of the
 * same user join the group (a second posternd, a second listener on the
 * same address) and take a share of the connections, so a plain bind is
 * tried first.
 *
 * Accepting is ours (accept4 on a uv_poll_t), not uv_listen's, so that it
 * can pause: when the process is out of descriptors the socket stays
 * readable, and a listener that only logged and returned would be called
 * again at once, forever.
 *
 * Ownership: a conn_listener belongs to its loop, freed in its handles'
 * close callbacks; the listening descriptor is closed there.
 */
#include "conn/conn_int.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int listener_socket(const struct addrinfo *ai, char *err, size_t errlen, const char *addr)
{
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "listen %s: socket: %s", addr, strerror(errno));
		return -1;
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (ai->ai_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
		snprintf(err, errlen, "listen %s: %s", addr, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* Fails, as a bind without SO_REUSEPORT would, when anything listens on
 * the address already; SO_REUSEADDR only so that connections in
 * TIME_WAIT from a previous run do not count. */
static int listener_probe(const struct addrinfo *ai, char *err, size_t errlen, const char *addr)
{
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "listen %s: socket: %s", addr, strerror(errno));
		return -1;
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ai->ai_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	int rc = bind(fd, ai->ai_addr, ai->ai_addrlen);
	if (rc < 0)
		snprintf(err, errlen, "listen %s: %s", addr, strerror(errno));
	close(fd);
	return rc;
}

int conn_bind(const char *host, unsigned port, const char *address, unsigned n, int *fds,
              char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
	struct addrinfo *res;
	char portstr[16];
	snprintf(portstr, sizeof(portstr), "%u", port);
	for (unsigned i = 0; i < n; i++)
		fds[i] = -1;
	int rc = getaddrinfo(host, portstr, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "listen %s: %s", address, gai_strerror(rc));
		return -1;
	}
	if (listener_probe(res, err, errlen, address) < 0) {
		freeaddrinfo(res);
		return -1;
	}
	for (unsigned i = 0; i < n; i++) {
		fds[i] = listener_socket(res, err, errlen, address);
		if (fds[i] < 0) {
			freeaddrinfo(res);
			return -1;
		}
	}
	freeaddrinfo(res);
	return 0;
}

/* accept4 calls per readable event: a loop also has sessions to serve. */
#define ACCEPT_BATCH 64
/* Accepting pauses this long when the process is out of descriptors. */
#define ACCEPT_BACKOFF_MS 250
/* At most one accept_error line per interval, with the count since. */
#define ACCEPT_ERROR_LOG_MS 10000

static void listener_poll_cb(uv_poll_t *p, int status, int events);

static void listener_note_error(struct conn_loop *cl, int err, bool paused)
{
	cl->accept_errors++;
	uint64_t now = uv_now(cl->loop);
	if (cl->accept_error_logged && now - cl->accept_error_logged < ACCEPT_ERROR_LOG_MS)
		return;
	log_warn("event=accept_error error=\"%s\" count=%llu%s", strerror(err),
	         (unsigned long long)cl->accept_errors,
	         paused ? " note=\"accepting paused briefly\"" : "");
	cl->accept_errors = 0;
	cl->accept_error_logged = now;
}

static void listener_resume(uv_timer_t *t)
{
	struct conn_listener *l = t->data;
	if (!l->cl->stopping)
		uv_poll_start(&l->poll, UV_READABLE, listener_poll_cb);
}

/* Out of descriptors: the reserve one makes room to take one connection
 * and tell it (421 4.3.2, except on smtps, where plaintext is garbage),
 * then accepting pauses so that the loop does not spin on a socket that
 * stays readable. Another thread may take the freed slot first (libuv's
 * own note on this trick): then only the pause happens. */
static void listener_out_of_fds(struct conn_listener *l, int err)
{
	struct conn_loop *cl = l->cl;
	if (cl->reserve_fd >= 0) {
		close(cl->reserve_fd);
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			if (!l->ops.implicit_tls) {
				char msg[512];
				int n = snprintf(msg, sizeof(msg), "421 4.3.2 %s Service busy; try again later\r\n",
				                 cl->hostname);
				(void)!write(fd, msg, (size_t)n);
			}
			close(fd);
		}
		cl->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	}
	listener_note_error(cl, err, true);
	uv_poll_stop(&l->poll);
	uv_timer_start(&l->backoff, listener_resume, ACCEPT_BACKOFF_MS, 0);
}

static void listener_poll_cb(uv_poll_t *p, int status, int events)
{
	struct conn_listener *l = p->data;
	struct conn_loop *cl = l->cl;
	(void)events;
	if (status < 0) {
		listener_note_error(cl, -status, false);
		return;
	}
	for (int i = 0; i < ACCEPT_BATCH && !cl->stopping; i++) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			conn__accept(cl, l, fd);
			continue;
		}
		switch (errno) {
		case EAGAIN:
#if EAGAIN != EWOULDBLOCK
		case EWOULDBLOCK:
#endif
			return;
		case EINTR:
		case ECONNABORTED:
		case EPROTO:
			continue;       /* that connection is gone; the next may wait */
		case EMFILE:
		case ENFILE:
		case ENOBUFS:
		case ENOMEM:
			listener_out_of_fds(l, errno);
			return;
		default:
			listener_note_error(cl, errno, false);
			return;
		}
	}
}

int conn_listen(struct conn_loop *cl, int fd, const struct conn_listener_ops *ops)
{
	struct conn_listener *l = xcalloc(1, sizeof(*l));
	l->cl = cl;
	l->ops = *ops;
	l->fd = fd;
	/* Opened now, while descriptors are plenty: see listener_out_of_fds. */
	if (cl->reserve_fd < 0)
		cl->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	uv_timer_init(cl->loop, &l->backoff);
	l->backoff.data = l;
	l->handles_open = 1;
	l->next = cl->listeners;
	cl->listeners = l;
	int rc = uv_poll_init(cl->loop, &l->poll, fd);
	if (rc == 0) {
		l->handles_open++;
		l->poll.data = l;
		rc = uv_poll_start(&l->poll, UV_READABLE, listener_poll_cb);
	}
	if (rc < 0)
		log_err("event=listen_error error=\"%s\"", uv_strerror(rc));
	return rc;
}

static void listener_closed(uv_handle_t *h)
{
	struct conn_listener *l = h->data;
	/* The descriptor outlives the poll handle that watched it. */
	if (--l->handles_open == 0) {
		if (l->fd >= 0)
			close(l->fd);
		free(l);
	}
}

void conn_stop_listening(struct conn_loop *cl)
{
	struct conn_listener *l = cl->listeners;
	cl->listeners = NULL;
	cl->stopping = true;
	while (l) {
		struct conn_listener *next = l->next;
		uv_close((uv_handle_t *)&l->backoff, listener_closed);
		if (l->handles_open == 2)
			uv_close((uv_handle_t *)&l->poll, listener_closed);
		l = next;
	}
}
