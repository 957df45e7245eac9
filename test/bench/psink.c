/*
 * psink.c - the benchmark's downstream: a small epoll SMTP sink that
 * accepts every message and counts them, and a bare OpenSSL TLS server
 * that measures the machine's handshake rate.
 *
 *   psink -p PORT [-T THREADS]
 *       SMTP sink on 127.0.0.1:PORT: EHLO (PIPELINING, 8BITMIME, SIZE,
 *       ENHANCEDSTATUSCODES), MAIL, RCPT, DATA, RSET, NOOP, QUIT. Every
 *       message ended by CRLF.CRLF gets "250 2.0.0 Ok" and is counted
 *       (messages and recipients). "XCOUNT" answers
 *       "250 msgs=N rcpts=N bytes=N": pgen --sink polls it.
 *   psink -p PORT --tls CERT KEY [-T THREADS]
 *       bare TLS server: handshake, "220 bare" greeting, "221" to QUIT,
 *       "250" to anything else; for pgen --handshake.
 *
 * Runs until SIGTERM/SIGINT. Build:
 *   cc -O2 -Wall -o psink psink.c -lpthread $(pkg-config --cflags --libs openssl)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

static atomic_long n_msgs, n_rcpts, n_bytes, n_conns;
static volatile sig_atomic_t stopping;
static SSL_CTX *ctx;        /* --tls */
static int port;
static const char *bind_addr = "127.0.0.1";

static void on_signal(int sig) { (void)sig; stopping = 1; }

struct conn {
	int fd;
	SSL *ssl;
	int hs_done;
	int in_data;
	int dstate;               /* DATA scanner, see scan_data() */
	long txn_rcpts;
	long txn_bytes;
	int quit;
	char in[16384];
	size_t inlen;
	char *out;
	size_t outlen, outoff, outcap;
	int want_out;
};

static void out_add(struct conn *c, const char *p, size_t n)
{
	if (c->outoff == c->outlen)
		c->outoff = c->outlen = 0;
	if (c->outlen + n > c->outcap) {
		c->outcap = (c->outlen + n) * 2 + 256;
		c->out = realloc(c->out, c->outcap);
		if (!c->out)
			abort();
	}
	memcpy(c->out + c->outlen, p, n);
	c->outlen += n;
}

static void out_str(struct conn *c, const char *s) { out_add(c, s, strlen(s)); }

static void conn_free(int ep, struct conn *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	if (c->ssl)
		SSL_free(c->ssl);
	close(c->fd);
	free(c->out);
	free(c);
}

/* DATA: states 0 mid-line, 1 CR, 2 line start, 3 line start '.', 4 ".\r".
 * Returns the number of bytes consumed up to and including the final LF,
 * or 0 when the end was not seen (all consumed). */
static size_t scan_data(struct conn *c, const char *p, size_t n)
{
	int st = c->dstate;
	for (size_t i = 0; i < n; i++) {
		char ch = p[i];
		switch (st) {
		case 0: st = ch == '\r' ? 1 : 0; break;
		case 1: st = ch == '\n' ? 2 : ch == '\r' ? 1 : 0; break;
		case 2: st = ch == '.' ? 3 : ch == '\r' ? 1 : 0; break;
		case 3: st = ch == '\r' ? 4 : 0; break;
		case 4:
			if (ch == '\n') {
				c->dstate = 2;
				return i + 1;
			}
			st = ch == '\r' ? 1 : 0;
			break;
		}
	}
	c->dstate = st;
	return 0;
}

static void smtp_line(struct conn *c, char *line, size_t len)
{
	while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		line[--len] = 0;
	if (strncasecmp(line, "EHLO", 4) == 0 || strncasecmp(line, "LHLO", 4) == 0)
		out_str(c, "250-psink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 104857600\r\n"
		           "250 ENHANCEDSTATUSCODES\r\n");
	else if (strncasecmp(line, "AUTH", 4) == 0)
		out_str(c, "235 2.7.0 Authentication successful\r\n");
	else if (strncasecmp(line, "HELO", 4) == 0)
		out_str(c, "250 psink\r\n");
	else if (strncasecmp(line, "MAIL", 4) == 0) {
		c->txn_rcpts = 0;
		out_str(c, "250 2.1.0 Ok\r\n");
	} else if (strncasecmp(line, "RCPT", 4) == 0) {
		c->txn_rcpts++;
		out_str(c, "250 2.1.5 Ok\r\n");
	} else if (strncasecmp(line, "DATA", 4) == 0) {
		if (c->txn_rcpts == 0)
			out_str(c, "554 5.5.1 No valid recipients\r\n");
		else {
			c->in_data = 1;
			c->dstate = 2;
			c->txn_bytes = 0;
			out_str(c, "354 End data with <CR><LF>.<CR><LF>\r\n");
		}
	} else if (strncasecmp(line, "RSET", 4) == 0) {
		c->txn_rcpts = 0;
		out_str(c, "250 2.0.0 Ok\r\n");
	} else if (strncasecmp(line, "NOOP", 4) == 0)
		out_str(c, "250 2.0.0 Ok\r\n");
	else if (strncasecmp(line, "QUIT", 4) == 0) {
		out_str(c, "221 2.0.0 Bye\r\n");
		c->quit = 1;
	} else if (strncasecmp(line, "XCOUNT", 6) == 0) {
		char b[128];
		snprintf(b, sizeof b, "250 msgs=%ld rcpts=%ld bytes=%ld\r\n",
		         atomic_load(&n_msgs), atomic_load(&n_rcpts), atomic_load(&n_bytes));
		out_str(c, b);
	} else
		out_str(c, ctx ? "250 2.0.0 Ok\r\n" : "502 5.5.2 Command not recognized\r\n");
}

/* Consume c->in: commands and DATA. */
static void process(struct conn *c)
{
	size_t off = 0;
	while (off < c->inlen && !c->quit) {
		if (c->in_data) {
			size_t used = scan_data(c, c->in + off, c->inlen - off);
			if (used == 0) {
				c->txn_bytes += (long)(c->inlen - off);
				off = c->inlen;
				break;
			}
			c->txn_bytes += (long)used;
			off += used;
			c->in_data = 0;
			atomic_fetch_add(&n_msgs, 1);
			atomic_fetch_add(&n_rcpts, c->txn_rcpts);
			atomic_fetch_add(&n_bytes, c->txn_bytes);
			c->txn_rcpts = 0;
			out_str(c, "250 2.0.0 Ok: queued\r\n");
			continue;
		}
		char *nl = memchr(c->in + off, '\n', c->inlen - off);
		if (!nl)
			break;
		size_t len = (size_t)(nl - (c->in + off)) + 1;
		*nl = 0;
		smtp_line(c, c->in + off, len);
		off += len;
	}
	memmove(c->in, c->in + off, c->inlen - off);
	c->inlen -= off;
	if (c->inlen == sizeof c->in) {   /* an absurd command line */
		c->inlen = 0;
		out_str(c, "500 5.5.2 Line too long\r\n");
	}
}

static void set_out(int ep, struct conn *c, int want)
{
	if (want == c->want_out)
		return;
	struct epoll_event ev = { .events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c };
	epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
	c->want_out = want;
}

/* Returns -1 when the connection is to be freed. */
static int conn_io(int ep, struct conn *c)
{
	if (c->ssl && !c->hs_done) {
		ERR_clear_error();
		int r = SSL_accept(c->ssl);
		if (r != 1) {
			int e = SSL_get_error(c->ssl, r);
			if (e == SSL_ERROR_WANT_READ) { set_out(ep, c, 0); return 0; }
			if (e == SSL_ERROR_WANT_WRITE) { set_out(ep, c, 1); return 0; }
			return -1;
		}
		c->hs_done = 1;
		out_str(c, "220 bare ESMTP\r\n");
	}
	for (int round = 0; round < 64; round++) {
		/* write */
		int blocked = 0;
		while (c->outoff < c->outlen) {
			size_t n = c->outlen - c->outoff;
			if (c->ssl) {
				ERR_clear_error();
				int r = SSL_write(c->ssl, c->out + c->outoff, (int)n);
				if (r > 0) { c->outoff += (size_t)r; continue; }
				int e = SSL_get_error(c->ssl, r);
				if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) { blocked = 1; break; }
				return -1;
			}
			ssize_t r = send(c->fd, c->out + c->outoff, n, MSG_NOSIGNAL);
			if (r > 0) { c->outoff += (size_t)r; continue; }
			if (r < 0 && errno == EAGAIN) { blocked = 1; break; }
			return -1;
		}
		if (c->quit && !blocked && c->outoff == c->outlen)
			return -1;
		/* read */
		int got = 0, eof = 0;
		for (;;) {
			size_t room = sizeof c->in - c->inlen;
			if (room == 0)
				break;
			if (c->ssl) {
				ERR_clear_error();
				int r = SSL_read(c->ssl, c->in + c->inlen, (int)room);
				if (r > 0) { c->inlen += (size_t)r; got = 1; continue; }
				int e = SSL_get_error(c->ssl, r);
				if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
					break;
				eof = 1;
				break;
			}
			ssize_t r = recv(c->fd, c->in + c->inlen, room, 0);
			if (r > 0) { c->inlen += (size_t)r; got = 1; continue; }
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				break;
			eof = 1;
			break;
		}
		if (got) {
			size_t pending = c->outlen - c->outoff;
			process(c);
			if (c->outlen - c->outoff > pending || c->quit)
				continue;     /* write the replies */
		}
		if (eof)
			return -1;
		set_out(ep, c, blocked);
		return 0;
	}
	set_out(ep, c, 1);
	return 0;
}

static int make_listener(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) { perror("socket"); exit(1); }
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	inet_pton(AF_INET, bind_addr, &a.sin_addr);
	if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) { perror("bind"); exit(1); }
	if (listen(fd, 4096) < 0) { perror("listen"); exit(1); }
	return fd;
}

static void *loop(void *arg)
{
	int lfd = (int)(long)arg;
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	struct epoll_event evs[256];
	while (!stopping) {
		int n = epoll_wait(ep, evs, 256, 200);
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (!c) {
				for (;;) {
					int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
					if (fd < 0)
						break;
					int one = 1;
					setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
					c = calloc(1, sizeof *c);
					if (!c) { close(fd); continue; }
					c->fd = fd;
					atomic_fetch_add(&n_conns, 1);
					struct epoll_event e2 = { .events = EPOLLIN, .data.ptr = c };
					epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e2);
					if (ctx) {
						c->ssl = SSL_new(ctx);
						SSL_set_fd(c->ssl, fd);
						SSL_set_accept_state(c->ssl);
					} else
						out_str(c, "220 psink ESMTP\r\n");
					if (conn_io(ep, c) < 0)
						conn_free(ep, c);
				}
				continue;
			}
			if (conn_io(ep, c) < 0)
				conn_free(ep, c);
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	static struct option lo[] = { {"tls", no_argument, 0, 't'}, {0, 0, 0, 0} };
	int threads = 1, tls = 0, c;
	while ((c = getopt_long(argc, argv, "p:T:b:t", lo, NULL)) != -1) {
		switch (c) {
		case 'p': port = atoi(optarg); break;
		case 'T': threads = atoi(optarg); break;
		case 'b': bind_addr = optarg; break;
		case 't': tls = 1; break;
		default:
			fprintf(stderr, "usage: psink -p PORT [-b ADDR] [-T THREADS] [--tls CERT KEY]\n");
			return 2;
		}
	}
	if (port <= 0 || threads < 1 || (tls && argc - optind != 2)) {
		fprintf(stderr, "usage: psink -p PORT [-b ADDR] [-T THREADS] [--tls CERT KEY]\n");
		return 2;
	}
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	if (tls) {
		ctx = SSL_CTX_new(TLS_server_method());
		SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
		SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
		SSL_CTX_set_read_ahead(ctx, 1);   /* as pgen: one read() per arrival */
		if (SSL_CTX_use_certificate_chain_file(ctx, argv[optind]) != 1 ||
		    SSL_CTX_use_PrivateKey_file(ctx, argv[optind + 1], SSL_FILETYPE_PEM) != 1) {
			ERR_print_errors_fp(stderr);
			return 1;
		}
	}
	pthread_t *th = calloc((size_t)threads, sizeof *th);
	for (int i = 0; i < threads; i++)
		pthread_create(&th[i], NULL, loop, (void *)(long)make_listener());
	fprintf(stderr, "psink: listening on %s:%d (%s, %d threads)\n", bind_addr, port,
	        tls ? "bare TLS" : "SMTP sink", threads);
	for (int i = 0; i < threads; i++)
		pthread_join(th[i], NULL);
	fprintf(stderr, "psink: %ld connections, %ld messages, %ld recipients, %ld bytes\n",
	        atomic_load(&n_conns), atomic_load(&n_msgs), atomic_load(&n_rcpts), atomic_load(&n_bytes));
	return 0;
}
