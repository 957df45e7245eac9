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

int listener_start(struct worker *w, size_t index)
{
	struct listener *l = &w->d->listeners[index];
	uv_tcp_t *server = &w->servers[index];
	uv_tcp_init(&w->loop, server);
	server->data = l;
	int rc = uv_tcp_open(server, l->fds[w->index]);
	if (rc == 0) {
		l->fds[w->index] = -1; /* the handle owns it now */
		rc = uv_listen((uv_stream_t *)server, 1024, session_accept);
	}
	if (rc < 0)
		log_err("event=listen_error listener=%s error=\"%s\"", l->conf->name, uv_strerror(rc));
	return rc;
}
