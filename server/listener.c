/*
 * listener.c - listening sockets. Each worker has its own socket per
 * listener (SO_REUSEPORT), bound before privileges are dropped, so the
 * kernel spreads connections over the loops without a shared accept lock.
 * SO_REUSEPORT would also let any other socket of the same user join the
 * group (a second posternd, a second listener on the same address) and
 * take a share of the connections, so a plain bind is tried first.
 */
#include "server/daemon.h"
#include "server/session.h"

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

int listener_bind(struct listener *l, unsigned nworkers, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
	struct addrinfo *res;
	char port[16];
	snprintf(port, sizeof(port), "%u", l->conf->port);
	int rc = getaddrinfo(l->conf->host, port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "listen %s: %s", l->conf->address, gai_strerror(rc));
		return -1;
	}
	if (listener_probe(res, err, errlen, l->conf->address) < 0) {
		freeaddrinfo(res);
		return -1;
	}
	l->fds = xcalloc(nworkers, sizeof(int));
	for (unsigned i = 0; i < nworkers; i++)
		l->fds[i] = -1;
	for (unsigned i = 0; i < nworkers; i++) {
		l->fds[i] = listener_socket(res, err, errlen, l->conf->address);
		if (l->fds[i] < 0) {
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

static void listener_note_error(struct worker *w, int err, bool paused)
{
	w->accept_errors++;
	uint64_t now = uv_now(&w->loop);
	if (w->accept_error_logged && now - w->accept_error_logged < ACCEPT_ERROR_LOG_MS)
		return;
	log_warn("event=accept_error error=\"%s\" count=%llu%s", strerror(err),
	         (unsigned long long)w->accept_errors,
	         paused ? " note=\"accepting paused briefly\"" : "");
	w->accept_errors = 0;
	w->accept_error_logged = now;
}

static void listener_resume(uv_timer_t *t)
{
	struct listener_io *lio = t->data;
	if (!lio->w->stopping)
		uv_poll_start(&lio->poll, UV_READABLE, listener_poll_cb);
}

/* Out of descriptors: the reserve one makes room to take one connection
 * and tell it (421 4.3.2, except on smtps, where plaintext is garbage),
 * then accepting pauses so that the loop does not spin on a socket that
 * stays readable. Another thread may take the freed slot first (libuv's
 * own note on this trick): then only the pause happens. */
static void listener_out_of_fds(struct listener_io *lio, int err)
{
	struct worker *w = lio->w;
	if (w->reserve_fd >= 0) {
		close(w->reserve_fd);
		int fd = accept4(lio->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			if (lio->l->conf->mode != CONF_MODE_SMTPS) {
				char msg[512];
				int n = snprintf(msg, sizeof(msg), "421 4.3.2 %s Service busy; try again later\r\n",
				                 w->d->conf->hostname);
				(void)!write(fd, msg, (size_t)n);
			}
			close(fd);
		}
		w->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	}
	listener_note_error(w, err, true);
	uv_poll_stop(&lio->poll);
	uv_timer_start(&lio->backoff, listener_resume, ACCEPT_BACKOFF_MS, 0);
}

static void listener_poll_cb(uv_poll_t *p, int status, int events)
{
	struct listener_io *lio = p->data;
	struct worker *w = lio->w;
	(void)events;
	if (status < 0) {
		listener_note_error(w, -status, false);
		return;
	}
	for (int i = 0; i < ACCEPT_BATCH && !w->stopping; i++) {
		int fd = accept4(lio->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			session_accept(w, lio->l, fd);
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
			listener_out_of_fds(lio, errno);
			return;
		default:
			listener_note_error(w, errno, false);
			return;
		}
	}
}

int listener_start(struct worker *w, size_t index)
{
	struct listener *l = &w->d->listeners[index];
	struct listener_io *lio = &w->servers[index];
	lio->w = w;
	lio->l = l;
	lio->fd = l->fds[w->index];
	l->fds[w->index] = -1; /* ours now, closed by listener_stop_all */
	uv_timer_init(&w->loop, &lio->backoff);
	lio->backoff.data = lio;
	lio->handles_open = 1;
	int rc = uv_poll_init(&w->loop, &lio->poll, lio->fd);
	if (rc == 0) {
		lio->handles_open++;
		lio->poll.data = lio;
		rc = uv_poll_start(&lio->poll, UV_READABLE, listener_poll_cb);
	}
	if (rc < 0)
		log_err("event=listen_error listener=%s error=\"%s\"", l->conf->name, uv_strerror(rc));
	return rc;
}

static void listener_closed(uv_handle_t *h)
{
	struct listener_io *lio = h->data;
	/* The descriptor outlives the poll handle that watched it. */
	if (--lio->handles_open == 0 && lio->fd >= 0) {
		close(lio->fd);
		lio->fd = -1;
	}
}

void listener_stop_all(struct worker *w)
{
	for (size_t i = 0; w->servers && i < w->d->nlisteners; i++) {
		struct listener_io *lio = &w->servers[i];
		if (!lio->w)
			continue;
		if (!uv_is_closing((uv_handle_t *)&lio->backoff))
			uv_close((uv_handle_t *)&lio->backoff, listener_closed);
		if (lio->handles_open == 2 && !uv_is_closing((uv_handle_t *)&lio->poll))
			uv_close((uv_handle_t *)&lio->poll, listener_closed);
	}
}
