/*
 * pgen.c - SMTP submission load generator for the Postern benchmark.
 *
 * N concurrent connections (slots) on one or more epoll threads; implicit
 * TLS (smtps) or STARTTLS; AUTH PLAIN; M messages of S bytes with R
 * recipients per connection; optional TLS session resumption. Every reply
 * is checked: a message counts only when the final reply to its data is
 * 2xx. Any unexpected reply is counted by phase and code and ends the
 * connection (QUIT, close); the slot then opens a new one while work is left.
 *
 * Modes:
 *   default      each slot: connect, [TLS], EHLO, AUTH, M transactions, QUIT,
 *                repeat until -d seconds have passed or -C connections made
 *   --idle       open -c connections (at most --ramp in set-up at once),
 *                authenticate, hold them until SIGTERM/SIGINT or -d seconds;
 *                writes "ready N" to --ready-file when all are up
 *   --handshake  connect, TLS, read the greeting, close (TLS handshake rate;
 *                works against psink --tls)
 *
 * --sink HOST:PORT: after the client phase, wait until psink (XCOUNT) has
 * received every recipient of every accepted message; the throughput then
 * counts the time until the last one reached the sink.
 *
 * Output: a human summary on stderr and one line of key=value on stdout.
 *
 * Build: cc -O2 -Wall -o pgen pgen.c -lpthread $(pkg-config --cflags --libs openssl)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

/* ---- options ------------------------------------------------------------ */

enum mode { M_LOAD, M_IDLE, M_HANDSHAKE };

static struct {
	const char *host;
	int port;
	int starttls;          /* 0: implicit TLS, 1: STARTTLS, 2: plaintext (no TLS) */
	int conns;             /* -c */
	int msgs;              /* -n per connection */
	int size;              /* -s bytes */
	int rcpts;             /* -r */
	double duration;       /* -d */
	long total_conns;      /* -C */
	int resume;            /* -R */
	int threads;           /* -T */
	enum mode mode;
	int ramp;              /* idle mode: connections in set-up at once */
	const char *user, *pass, *from, *rcpt_domain, *helo, *sni;
	const char *ready_file;
	const char *sink;
	double sink_timeout;
	double timeout;        /* per reply */
	int pipelining;        /* use PIPELINING when offered */
	int quiet;
	const char *label;
} opt = {
	.host = "127.0.0.1", .port = 465, .conns = 16, .msgs = 1, .size = 4096, .rcpts = 1,
	.threads = 1, .ramp = 200, .user = "bench", .pass = "bench-secret",
	.from = "bench@bench.test", .rcpt_domain = "example.org", .helo = "pgen.bench.test",
	.sink_timeout = 120, .timeout = 60, .pipelining = 1, .label = "-",
};

/* ---- time --------------------------------------------------------------- */

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static volatile sig_atomic_t stop_flag;
static void on_signal(int sig) { (void)sig; stop_flag = 1; }

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "pgen: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(2);
}

/* ---- per-thread statistics ------------------------------------------------ */

#define MAX_ERRKEYS 64

struct lat { uint32_t *v; size_t n, cap; };

static void lat_add(struct lat *l, double secs)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 4096;
		l->v = realloc(l->v, l->cap * sizeof *l->v);
		if (!l->v) die("out of memory");
	}
	double us = secs * 1e6;
	l->v[l->n++] = us > 4e9 ? 4000000000u : (uint32_t)us;
}

struct stats {
	long conns_started, conns_done, conns_failed, resumed, handshakes;
	long msgs_ok, msgs_failed;
	long errors;
	struct lat txn, setup;
	struct { char key[32]; long n; } err[MAX_ERRKEYS];
	int nerr;
};

static void err_count(struct stats *s, const char *phase, const char *what)
{
	char key[32];
	snprintf(key, sizeof key, "%s_%s", phase, what);
	s->errors++;
	for (int i = 0; i < s->nerr; i++)
		if (strcmp(s->err[i].key, key) == 0) { s->err[i].n++; return; }
	if (s->nerr < MAX_ERRKEYS) {
		snprintf(s->err[s->nerr].key, sizeof s->err[s->nerr].key, "%s", key);
		s->err[s->nerr++].n = 1;
	}
}

/* ---- connections --------------------------------------------------------- */

enum phase {
	P_FREE, P_CONNECT, P_TLS, P_GREETING, P_EHLO1, P_STARTTLS, P_EHLO, P_AUTH,
	P_IDLE, P_MAIL, P_RCPT, P_DATA, P_DOT, P_QUIT, P_CLOSING
};
static const char *phase_name[] = {
	"free", "connect", "tls", "greeting", "ehlo", "starttls", "ehlo", "auth",
	"idle", "mail", "rcpt", "data", "dot", "quit", "closing"
};

struct thread;

struct slot {
	struct thread *t;
	int fd;
	SSL *ssl;
	SSL_SESSION *sess;      /* for resumption */
	enum phase ph;
	int tls_up;
	int pipelining;
	int rcpt_left;          /* replies still expected for RCPT */
	int msgs_done;
	double t_conn, t_txn, deadline;
	char in[8192];
	size_t inlen;
	char *out;              /* pending output (owned) */
	size_t outlen, outoff, outcap;
	int ehlo_pipelining, ehlo_starttls, ehlo_auth;
	int reply_code;         /* code of the reply being assembled */
	int active;             /* slot still has work */
	int want_out;           /* epoll interest */
	int registered;
	double retry_at;        /* after a failure: not before this */
};

struct thread {
	int id;
	pthread_t th;
	int ep;
	struct slot *slots;
	int nslots;
	struct stats st;
	long conns_budget;      /* -C: connections this thread may still start */
	int in_setup;           /* idle mode: connections not yet authenticated */
	int established;        /* idle mode */
	int live;               /* slots with an open connection */
};

static SSL_CTX *ctx;
static char *message;           /* the message text, dot-terminated */
static size_t message_len;
static char auth_line[512];
static double t_start, t_deadline;
static struct sockaddr_in server_addr;
static int nthreads_ready;
static pthread_mutex_t ready_mu = PTHREAD_MUTEX_INITIALIZER;
static struct thread *threads;
static int ex_slot_idx;

static void build_message(void)
{
	size_t cap = (size_t)opt.size + 2048;
	message = malloc(cap);
	if (!message) die("out of memory");
	int n = snprintf(message, cap,
		"From: Bench <%s>\r\n"
		"To: <rcpt@%s>\r\n"
		"Subject: pgen benchmark message\r\n"
		"Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
		"Message-ID: <pgen@bench.test>\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: text/plain; charset=us-ascii\r\n"
		"\r\n", opt.from, opt.rcpt_domain);
	size_t len = (size_t)n;
	static const char alpha[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ";
	unsigned k = 0;
	while (len + 2 < (size_t)opt.size) {
		size_t line = 76;
		if (len + line + 2 > (size_t)opt.size)
			line = (size_t)opt.size - len - 2;
		for (size_t i = 0; i < line; i++)
			message[len + i] = alpha[(k++ * 7 + i) % (sizeof alpha - 1)];
		if (line > 0 && message[len] == '.')
			message[len] = 'x';
		len += line;
		message[len++] = '\r';
		message[len++] = '\n';
	}
	memcpy(message + len, ".\r\n", 3);
	message_len = len + 3;
}

static void out_add(struct slot *s, const char *p, size_t n)
{
	if (s->outoff == s->outlen)
		s->outoff = s->outlen = 0;
	if (s->outlen + n > s->outcap) {
		s->outcap = (s->outlen + n) * 2;
		s->out = realloc(s->out, s->outcap);
		if (!s->out) die("out of memory");
	}
	memcpy(s->out + s->outlen, p, n);
	s->outlen += n;
}

static void out_printf(struct slot *s, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	out_add(s, buf, (size_t)n);
}

static void ep_set(struct slot *s, int want_out)
{
	struct epoll_event ev = { .events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = s };
	if (!s->registered) {
		if (epoll_ctl(s->t->ep, EPOLL_CTL_ADD, s->fd, &ev) < 0)
			die("epoll_ctl add: %s", strerror(errno));
		s->registered = 1;
	} else if (want_out != s->want_out) {
		if (epoll_ctl(s->t->ep, EPOLL_CTL_MOD, s->fd, &ev) < 0)
			die("epoll_ctl mod: %s", strerror(errno));
	}
	s->want_out = want_out;
}

static void conn_close(struct slot *s)
{
	if (s->ssl) {
		if (s->tls_up)
			SSL_shutdown(s->ssl);   /* best effort close_notify */
		SSL_free(s->ssl);
		s->ssl = NULL;
	}
	if (s->fd >= 0) {
		close(s->fd);              /* removes it from epoll */
		s->fd = -1;
		s->t->live--;
	}
	s->registered = 0;
	s->want_out = 0;
	s->tls_up = 0;
	s->inlen = 0;
	s->outlen = s->outoff = 0;
	if (s->ph != P_IDLE && s->ph != P_FREE && opt.mode == M_IDLE && s->ph < P_IDLE)
		s->t->in_setup--;
	s->ph = P_FREE;
}

/* A failure: count it by phase and reason; a message in flight is lost. */
static void conn_fail(struct slot *s, const char *what)
{
	struct stats *st = &s->t->st;
	err_count(st, phase_name[s->ph], what);
	if (getenv("PGEN_DEBUG") && s->fd >= 0) {
		struct sockaddr_in la;
		socklen_t ll = sizeof la;
		getsockname(s->fd, (struct sockaddr *)&la, &ll);
		fprintf(stderr, "pgen: debug: %s in %s: local port %d, msgs done %d, out %zu/%zu, in %zu, "
		        "%.3f s after the connect\n", what, phase_name[s->ph], ntohs(la.sin_port), s->msgs_done,
		        s->outoff, s->outlen, s->inlen, now() - s->t_conn);
	}
	if (s->ph >= P_MAIL && s->ph <= P_DOT)
		st->msgs_failed++;
	if (s->ph == P_IDLE)
		s->t->established--;
	st->conns_failed++;
	s->retry_at = now() + 0.05;   /* no busy loop against a refusing server */
	if (s->tls_up && s->ph != P_QUIT && s->ph != P_CLOSING && s->fd >= 0) {
		/* try a polite QUIT without waiting for it */
		static const char q[] = "QUIT\r\n";
		ERR_clear_error();
		(void)SSL_write(s->ssl, q, sizeof q - 1);
	}
	ERR_clear_error();
	conn_close(s);
}

static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	struct slot *s = SSL_get_ex_data(ssl, ex_slot_idx);
	if (!s || !opt.resume)
		return 0;
	if (s->sess)
		SSL_SESSION_free(s->sess);
	s->sess = sess;
	return 1;   /* we keep the reference */
}

static int tls_begin(struct slot *s)
{
	s->ssl = SSL_new(ctx);
	if (!s->ssl)
		return -1;
	SSL_set_fd(s->ssl, s->fd);
	SSL_set_ex_data(s->ssl, ex_slot_idx, s);
	if (opt.sni)
		SSL_set_tlsext_host_name(s->ssl, opt.sni);
	if (opt.resume && s->sess)
		SSL_set_session(s->ssl, s->sess);
	SSL_set_connect_state(s->ssl);
	s->ph = P_TLS;
	return 0;
}

static int more_work(struct thread *t)
{
	if (stop_flag)
		return 0;
	if (opt.mode == M_IDLE)
		return 1;
	if (opt.total_conns > 0)
		return t->conns_budget > 0;
	return now() < t_deadline;
}

static void conn_open(struct slot *s)
{
	struct thread *t = s->t;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		err_count(&t->st, "connect", "socket");
		s->active = 0;
		return;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	s->fd = fd;
	t->live++;
	s->registered = 0;
	s->msgs_done = 0;
	s->tls_up = 0;
	s->inlen = 0;
	s->outlen = s->outoff = 0;
	s->ehlo_pipelining = s->ehlo_starttls = s->ehlo_auth = 0;
	s->pipelining = 0;
	s->t_conn = now();
	s->deadline = s->t_conn + opt.timeout;
	t->st.conns_started++;
	if (opt.total_conns > 0)
		t->conns_budget--;
	if (opt.mode == M_IDLE)
		t->in_setup++;
	s->ph = P_CONNECT;
	if (connect(fd, (struct sockaddr *)&server_addr, sizeof server_addr) < 0 && errno != EINPROGRESS) {
		char e[24];
		snprintf(e, sizeof e, "errno%d", errno);
		conn_fail(s, e);
		return;
	}
	ep_set(s, 1);
}

static void start_txn(struct slot *s)
{
	s->t_txn = now();
	s->deadline = s->t_txn + opt.timeout;
	s->ph = P_MAIL;
	s->rcpt_left = opt.rcpts;
	out_printf(s, "MAIL FROM:<%s> SIZE=%zu\r\n", opt.from, message_len);
	if (s->pipelining) {
		for (int i = 0; i < opt.rcpts; i++)
			out_printf(s, "RCPT TO:<rcpt%d@%s>\r\n", i, opt.rcpt_domain);
		out_add(s, "DATA\r\n", 6);
	}
}

static void next_step_after_auth(struct slot *s)
{
	struct thread *t = s->t;
	lat_add(&t->st.setup, now() - s->t_conn);
	if (opt.mode == M_IDLE) {
		s->ph = P_IDLE;
		t->in_setup--;
		t->established++;
		return;
	}
	if (s->msgs_done < opt.msgs && (s->msgs_done == 0 || more_work(t)))
		start_txn(s);
	else {
		s->ph = P_QUIT;
		out_add(s, "QUIT\r\n", 6);
	}
}

/* One complete reply (code, last line seen). Returns -1 when the connection
 * was closed. */
static int on_reply(struct slot *s, int code)
{
	struct thread *t = s->t;
	char cs[8];
	snprintf(cs, sizeof cs, "%d", code);
	s->deadline = now() + opt.timeout;
	switch (s->ph) {
	case P_GREETING:
		if (code != 220) { conn_fail(s, cs); return -1; }
		if (opt.mode == M_HANDSHAKE) {
			t->st.handshakes++;
			t->st.conns_done++;
			if (SSL_session_reused(s->ssl))
				t->st.resumed++;
			lat_add(&t->st.setup, now() - s->t_conn);
			conn_close(s);
			return -1;
		}
		s->ph = s->tls_up ? P_EHLO : P_EHLO1;
		out_printf(s, "EHLO %s\r\n", opt.helo);
		return 0;
	case P_EHLO1:
		if (code != 250) { conn_fail(s, cs); return -1; }
		if (opt.starttls == 2) {       /* plaintext: straight to AUTH */
			s->pipelining = opt.pipelining && s->ehlo_pipelining;
			s->ph = P_AUTH;
			out_add(s, auth_line, strlen(auth_line));
			return 0;
		}
		if (!s->ehlo_starttls) { conn_fail(s, "nostarttls"); return -1; }
		s->ph = P_STARTTLS;
		out_add(s, "STARTTLS\r\n", 10);
		return 0;
	case P_STARTTLS:
		if (code != 220) { conn_fail(s, cs); return -1; }
		tls_begin(s);
		return 1;       /* switch to TLS: stop parsing */
	case P_EHLO:
		if (code != 250) { conn_fail(s, cs); return -1; }
		s->pipelining = opt.pipelining && s->ehlo_pipelining;
		s->ph = P_AUTH;
		out_add(s, auth_line, strlen(auth_line));
		return 0;
	case P_AUTH:
		if (code != 235) { conn_fail(s, cs); return -1; }
		next_step_after_auth(s);
		return 0;
	case P_MAIL:
		if (code / 100 != 2) { conn_fail(s, cs); return -1; }
		s->ph = P_RCPT;
		if (!s->pipelining)
			out_printf(s, "RCPT TO:<rcpt%d@%s>\r\n", opt.rcpts - s->rcpt_left, opt.rcpt_domain);
		return 0;
	case P_RCPT:
		if (code / 100 != 2) { conn_fail(s, cs); return -1; }
		if (--s->rcpt_left > 0) {
			if (!s->pipelining)
				out_printf(s, "RCPT TO:<rcpt%d@%s>\r\n", opt.rcpts - s->rcpt_left, opt.rcpt_domain);
			return 0;
		}
		s->ph = P_DATA;
		if (!s->pipelining)
			out_add(s, "DATA\r\n", 6);
		return 0;
	case P_DATA:
		if (code != 354) { conn_fail(s, cs); return -1; }
		s->ph = P_DOT;
		out_add(s, message, message_len);
		return 0;
	case P_DOT:
		if (code / 100 != 2) { conn_fail(s, cs); return -1; }
		t->st.msgs_ok++;
		lat_add(&t->st.txn, now() - s->t_txn);
		s->msgs_done++;
		if (s->msgs_done < opt.msgs && more_work(t))
			start_txn(s);
		else {
			s->ph = P_QUIT;
			out_add(s, "QUIT\r\n", 6);
		}
		return 0;
	case P_QUIT:
		if (code != 221)
			err_count(&t->st, "quit", cs);
		t->st.conns_done++;
		if (s->ssl && SSL_session_reused(s->ssl))
			t->st.resumed++;
		conn_close(s);
		return -1;
	case P_IDLE:
		/* the server spoke on an idle connection: 421 timeout or shutdown */
		conn_fail(s, cs);
		return -1;
	default:
		conn_fail(s, "unexpected");
		return -1;
	}
}

/* Parse complete reply lines from s->in. */
static int parse_replies(struct slot *s)
{
	size_t off = 0;
	int rc = 0;
	while (rc == 0) {
		char *nl = memchr(s->in + off, '\n', s->inlen - off);
		if (!nl)
			break;
		char *line = s->in + off;
		size_t len = (size_t)(nl - line) + 1;
		off += len;
		if (len < 5 || line[0] < '2' || line[0] > '5') {
			conn_fail(s, "badreply");
			return -1;
		}
		int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
		if (s->ph == P_EHLO || s->ph == P_EHLO1) {
			const char *kw = line + 4;
			if (strncasecmp(kw, "PIPELINING", 10) == 0) s->ehlo_pipelining = 1;
			else if (strncasecmp(kw, "STARTTLS", 8) == 0) s->ehlo_starttls = 1;
			else if (strncasecmp(kw, "AUTH", 4) == 0) s->ehlo_auth = 1;
		}
		if (line[3] == '-')
			continue;
		rc = on_reply(s, code);
		if (rc < 0)
			return -1;
	}
	if (off > 0) {
		memmove(s->in, s->in + off, s->inlen - off);
		s->inlen -= off;
	}
	if (s->inlen == sizeof s->in) {
		conn_fail(s, "longreply");
		return -1;
	}
	return rc;
}

static void tls_fail(struct slot *s, int err)
{
	unsigned long e = ERR_peek_error();
	if (err == SSL_ERROR_ZERO_RETURN || (err == SSL_ERROR_SYSCALL && e == 0))
		conn_fail(s, "eof");
	else
		conn_fail(s, "tls");
}

/* Drive one connection as far as it goes without blocking. */
static void conn_run(struct slot *s, uint32_t events)
{
	for (;;) {
		if (s->ph == P_CONNECT) {
			int err = 0;
			socklen_t l = sizeof err;
			if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
				return;
			getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &l);
			if (err) {
				char e[24];
				snprintf(e, sizeof e, "errno%d", err);
				conn_fail(s, e);
				return;
			}
			if (opt.starttls)
				s->ph = P_GREETING;
			else
				tls_begin(s);
			ep_set(s, 0);
			continue;
		}
		if (s->ph == P_TLS) {
			ERR_clear_error();
			int r = SSL_do_handshake(s->ssl);
			if (r == 1) {
				s->tls_up = 1;
				if (opt.starttls) {
					s->ph = P_EHLO;
					out_printf(s, "EHLO %s\r\n", opt.helo);
				} else
					s->ph = P_GREETING;
				s->ehlo_pipelining = s->ehlo_starttls = s->ehlo_auth = 0;
				continue;
			}
			int err = SSL_get_error(s->ssl, r);
			if (err == SSL_ERROR_WANT_READ) { ep_set(s, 0); return; }
			if (err == SSL_ERROR_WANT_WRITE) { ep_set(s, 1); return; }
			tls_fail(s, err);
			return;
		}
		/* write what is pending */
		int blocked_out = 0;
		while (s->outoff < s->outlen) {
			size_t n = s->outlen - s->outoff;
			if (s->tls_up) {
				ERR_clear_error();
				int r = SSL_write(s->ssl, s->out + s->outoff, (int)n);
				if (r > 0) { s->outoff += (size_t)r; continue; }
				int err = SSL_get_error(s->ssl, r);
				if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) { blocked_out = 1; break; }
				tls_fail(s, err);
				return;
			} else {
				ssize_t r = send(s->fd, s->out + s->outoff, n, MSG_NOSIGNAL);
				if (r > 0) { s->outoff += (size_t)r; continue; }
				if (r < 0 && (errno == EAGAIN || errno == EINTR)) { blocked_out = 1; break; }
				conn_fail(s, "eof");
				return;
			}
		}
		/* read what is there */
		int got = 0, eof = 0;
		for (;;) {
			size_t room = sizeof s->in - s->inlen;
			if (room == 0)
				break;
			if (s->tls_up) {
				ERR_clear_error();
				int r = SSL_read(s->ssl, s->in + s->inlen, (int)room);
				if (r > 0) { s->inlen += (size_t)r; got = 1; continue; }
				int err = SSL_get_error(s->ssl, r);
				if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
					break;
				unsigned long e = ERR_peek_error();
				eof = (err == SSL_ERROR_ZERO_RETURN || (err == SSL_ERROR_SYSCALL && e == 0)) ? 1 : 2;
				break;
			} else {
				ssize_t r = recv(s->fd, s->in + s->inlen, room, 0);
				if (r > 0) { s->inlen += (size_t)r; got = 1; continue; }
				if (r < 0 && (errno == EAGAIN || errno == EINTR))
					break;
				eof = 1;
				break;
			}
		}
		if (eof) {
			/* replies that came before the close count first */
			if (got && parse_replies(s) < 0)
				return;
			if (s->fd < 0)
				return;
			if (s->ph == P_QUIT && eof == 1) {   /* closed without (or after) 221 */
				s->t->st.conns_done++;
				conn_close(s);
				return;
			}
			conn_fail(s, eof == 1 ? "eof" : "tls");
			return;
		}
		if (got) {
			size_t before = s->outlen - s->outoff;
			int rc = parse_replies(s);
			if (rc < 0)
				return;
			if (rc == 1) {         /* STARTTLS: handshake next */
				if (s->inlen) {   /* the server sent more in plaintext */
					conn_fail(s, "pipelined");
					return;
				}
				continue;
			}
			if (s->outlen - s->outoff > before || (s->outoff < s->outlen && !blocked_out))
				continue;      /* new output: write it */
		}
		ep_set(s, blocked_out);
		return;
	}
}

static void slot_start(struct slot *s)
{
	if (s->active && more_work(s->t)) {
		conn_open(s);
		if (s->ph == P_CONNECT)
			return;
	} else
		s->active = 0;
}

static void write_ready(long n)
{
	if (!opt.ready_file)
		return;
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s.tmp", opt.ready_file);
	FILE *f = fopen(tmp, "w");
	if (!f)
		return;
	fprintf(f, "ready %ld\n", n);
	fclose(f);
	rename(tmp, opt.ready_file);
}

static void *thread_main(void *arg)
{
	struct thread *t = arg;
	struct epoll_event evs[256];
	t->ep = epoll_create1(EPOLL_CLOEXEC);
	if (t->ep < 0)
		die("epoll_create1: %s", strerror(errno));
	for (int i = 0; i < t->nslots; i++) {
		t->slots[i].t = t;
		t->slots[i].fd = -1;
		t->slots[i].active = 1;
		t->slots[i].ph = P_FREE;
	}
	double last_sweep = now();
	int reported = 0;
	for (;;) {
		/* start connections on free slots (idle mode: ramped) */
		for (int i = 0; i < t->nslots; i++) {
			struct slot *s = &t->slots[i];
			if (s->ph != P_FREE || !s->active)
				continue;
			if (s->retry_at > 0 && now() < s->retry_at)
				continue;
			if (opt.mode == M_IDLE && t->in_setup >= opt.ramp)
				break;
			slot_start(s);
		}
		if (t->live == 0) {
			int any = 0;
			for (int i = 0; i < t->nslots; i++)
				any |= t->slots[i].active && more_work(t);
			if (!any)
				break;
		}
		if (opt.mode == M_IDLE && !reported && t->established == t->nslots) {
			reported = 1;
			pthread_mutex_lock(&ready_mu);
			nthreads_ready++;
			if (nthreads_ready == opt.threads) {
				long est = 0;
				for (int i = 0; i < opt.threads; i++)
					est += threads[i].established;
				fprintf(stderr, "pgen: ready: %ld connections authenticated and idle\n", est);
				write_ready(est);
			}
			pthread_mutex_unlock(&ready_mu);
		}
		if (opt.mode == M_IDLE && (stop_flag || (opt.duration > 0 && now() >= t_deadline)))
			break;
		int n = epoll_wait(t->ep, evs, 256, 100);
		for (int i = 0; i < n; i++) {
			struct slot *s = evs[i].data.ptr;
			if (s->fd < 0)
				continue;
			conn_run(s, evs[i].events);
		}
		double tn = now();
		if (tn - last_sweep > 0.25) {
			last_sweep = tn;
			for (int i = 0; i < t->nslots; i++) {
				struct slot *s = &t->slots[i];
				if (s->fd >= 0 && s->ph != P_IDLE && tn > s->deadline)
					conn_fail(s, "timeout");
			}
		}
	}
	/* idle mode / stop: close what is open */
	for (int i = 0; i < t->nslots; i++) {
		struct slot *s = &t->slots[i];
		if (s->fd >= 0) {
			if (s->ph == P_IDLE) {
				static const char q[] = "QUIT\r\n";
				ERR_clear_error();
				(void)SSL_write(s->ssl, q, sizeof q - 1);
				t->st.conns_done++;
				s->ph = P_CLOSING;
				conn_close(s);
			} else
				conn_fail(s, "stopped");
		}
		if (s->sess)
			SSL_SESSION_free(s->sess);
		free(s->out);
	}
	close(t->ep);
	return NULL;
}

/* ---- sink ------------------------------------------------------------------ */

/* XCOUNT on psink: returns the number of recipients received, -1 on error. */
static long sink_count(void)
{
	char host[256];
	snprintf(host, sizeof host, "%s", opt.sink);
	char *colon = strrchr(host, ':');
	if (!colon)
		die("--sink HOST:PORT");
	*colon = 0;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1)) };
	if (inet_pton(AF_INET, host, &a.sin_addr) != 1)
		die("--sink: bad address %s", host);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct timeval tv = { .tv_sec = 5 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
		close(fd);
		return -1;
	}
	char buf[512];
	size_t len = 0;
	long result = -1;
	int stage = 0;
	const char *req = "XCOUNT\r\nQUIT\r\n";
	if (write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
		close(fd);
		return -1;
	}
	for (;;) {
		ssize_t r = read(fd, buf + len, sizeof buf - 1 - len);
		if (r <= 0)
			break;
		len += (size_t)r;
		buf[len] = 0;
		char *nl;
		while ((nl = strchr(buf, '\n'))) {
			*nl = 0;
			if (stage == 1 && strncmp(buf, "250 ", 4) == 0) {
				long m, rc;
				if (sscanf(buf + 4, "msgs=%ld rcpts=%ld", &m, &rc) == 2)
					result = rc;
			}
			stage++;
			size_t used = (size_t)(nl - buf) + 1;
			memmove(buf, nl + 1, len - used + 1);
			len -= used;
		}
		if (stage >= 3)
			break;
	}
	close(fd);
	return result;
}

/* ---- main ------------------------------------------------------------------ */

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static double pct(struct lat *l, double p)
{
	if (l->n == 0)
		return 0;
	size_t i = (size_t)(p * (double)(l->n - 1) + 0.5);
	return l->v[i] / 1000.0;    /* ms */
}

static void merge_lat(struct lat *dst, struct lat *src)
{
	for (size_t i = 0; i < src->n; i++) {
		if (dst->n == dst->cap) {
			dst->cap = dst->cap ? dst->cap * 2 : 4096;
			dst->v = realloc(dst->v, dst->cap * sizeof *dst->v);
			if (!dst->v) die("out of memory");
		}
		dst->v[dst->n++] = src->v[i];
	}
}

static double cpu_secs(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void usage(void)
{
	fprintf(stderr,
"usage: pgen [options]\n"
"  -H HOST         server address (127.0.0.1)\n"
"  -p PORT         server port (465)\n"
"  --starttls      STARTTLS instead of implicit TLS; --plain: no TLS at all\n"
"  -c N            concurrent connections (16)\n"
"  -n M            messages per connection (1); 0: connect, AUTH, QUIT\n"
"  -s BYTES        message size (4096)\n"
"  -r R            recipients per message (1)\n"
"  -d SECS         run for SECS (no new transaction or connection after it)\n"
"  -C TOTAL        make TOTAL connections instead of running for -d\n"
"  -R              resume TLS sessions (tickets / session ids)\n"
"  -T THREADS      epoll threads (1)\n"
"  --idle          open -c connections, authenticate, hold until SIGTERM or -d\n"
"  --ramp K        idle mode: at most K connections in set-up at once (200)\n"
"  --ready-file F  idle mode: write \"ready N\" to F when all are up\n"
"  --handshake     connect, TLS, read the greeting, close\n"
"  --sink H:P      wait until psink at H:P has every accepted recipient\n"
"  --sink-timeout S  (120)\n"
"  --timeout S     per-reply timeout (60)\n"
"  --no-pipelining one command per round trip\n"
"  -u USER -w PASS AUTH PLAIN credentials (bench / bench-secret)\n"
"  --from ADDR     MAIL FROM (bench@bench.test); --rcpt-domain D (example.org)\n"
"  --sni NAME      TLS server name\n"
"  --label TEXT    copied into the key=value line\n"
"  -q              only the key=value line\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static struct option lo[] = {
		{"starttls", no_argument, 0, 1}, {"plain", no_argument, 0, 2},
		{"idle", no_argument, 0, 3}, {"ramp", required_argument, 0, 4},
		{"ready-file", required_argument, 0, 5}, {"handshake", no_argument, 0, 6},
		{"sink", required_argument, 0, 7}, {"sink-timeout", required_argument, 0, 8},
		{"timeout", required_argument, 0, 9}, {"no-pipelining", no_argument, 0, 10},
		{"from", required_argument, 0, 11}, {"rcpt-domain", required_argument, 0, 12},
		{"sni", required_argument, 0, 13}, {"label", required_argument, 0, 14},
		{"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "H:p:c:n:s:r:d:C:RT:u:w:qh", lo, NULL)) != -1) {
		switch (c) {
		case 'H': opt.host = optarg; break;
		case 'p': opt.port = atoi(optarg); break;
		case 'c': opt.conns = atoi(optarg); break;
		case 'n': opt.msgs = atoi(optarg); break;
		case 's': opt.size = atoi(optarg); break;
		case 'r': opt.rcpts = atoi(optarg); break;
		case 'd': opt.duration = atof(optarg); break;
		case 'C': opt.total_conns = atol(optarg); break;
		case 'R': opt.resume = 1; break;
		case 'T': opt.threads = atoi(optarg); break;
		case 'u': opt.user = optarg; break;
		case 'w': opt.pass = optarg; break;
		case 'q': opt.quiet = 1; break;
		case 1: opt.starttls = 1; break;
		case 2: opt.starttls = 2; break;
		case 3: opt.mode = M_IDLE; break;
		case 4: opt.ramp = atoi(optarg); break;
		case 5: opt.ready_file = optarg; break;
		case 6: opt.mode = M_HANDSHAKE; break;
		case 7: opt.sink = optarg; break;
		case 8: opt.sink_timeout = atof(optarg); break;
		case 9: opt.timeout = atof(optarg); break;
		case 10: opt.pipelining = 0; break;
		case 11: opt.from = optarg; break;
		case 12: opt.rcpt_domain = optarg; break;
		case 13: opt.sni = optarg; break;
		case 14: opt.label = optarg; break;
		default: usage();
		}
	}
	if (opt.conns < 1 || opt.threads < 1 || opt.rcpts < 1 || opt.size < 256 || opt.msgs < 0)
		usage();
	if (opt.mode == M_LOAD && opt.duration <= 0 && opt.total_conns <= 0)
		opt.duration = 10;
	if (opt.threads > opt.conns)
		opt.threads = opt.conns;
	if (opt.mode == M_HANDSHAKE && opt.starttls)
		die("--handshake needs implicit TLS");

	/* enough descriptors for -c connections */
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < (rlim_t)opt.conns + 64) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
		if (rl.rlim_cur < (rlim_t)opt.conns + 64)
			die("RLIMIT_NOFILE is %lu, need %d: raise ulimit -n", (unsigned long)rl.rlim_cur, opt.conns + 64);
	}

	server_addr.sin_family = AF_INET;
	server_addr.sin_port = htons((uint16_t)opt.port);
	if (inet_pton(AF_INET, opt.host, &server_addr.sin_addr) != 1)
		die("bad address %s", opt.host);

	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx)
		die("SSL_CTX_new");
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* One read() per arrival instead of two per TLS record (header, then
	 * body): the generator's own system calls are CPU taken from the
	 * server on a shared machine. */
	SSL_CTX_set_read_ahead(ctx, 1);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
	ex_slot_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);

	build_message();
	{
		char raw[300];
		int n = snprintf(raw, sizeof raw, "%c%s%c%s", 0, opt.user, 0, opt.pass);
		unsigned char b64[420];
		int m = EVP_EncodeBlock(b64, (unsigned char *)raw, n);
		snprintf(auth_line, sizeof auth_line, "AUTH PLAIN %.*s\r\n", m, b64);
	}

	long sink_base = 0;
	if (opt.sink) {
		sink_base = sink_count();
		if (sink_base < 0)
			die("cannot query the sink at %s", opt.sink);
	}

	threads = calloc((size_t)opt.threads, sizeof *threads);
	struct slot *slots = calloc((size_t)opt.conns, sizeof *slots);
	if (!threads || !slots)
		die("out of memory");
	int per = opt.conns / opt.threads, extra = opt.conns % opt.threads, off = 0;
	long cper = opt.total_conns / opt.threads, cextra = opt.total_conns % opt.threads;
	for (int i = 0; i < opt.threads; i++) {
		threads[i].id = i;
		threads[i].slots = slots + off;
		threads[i].nslots = per + (i < extra);
		threads[i].conns_budget = cper + (i < cextra);
		off += threads[i].nslots;
	}

	double cpu0 = cpu_secs();
	t_start = now();
	t_deadline = t_start + (opt.duration > 0 ? opt.duration : 1e9);
	for (int i = 0; i < opt.threads; i++)
		if (pthread_create(&threads[i].th, NULL, thread_main, &threads[i]) != 0)
			die("pthread_create");
	for (int i = 0; i < opt.threads; i++)
		pthread_join(threads[i].th, NULL);
	double t_client = now();
	double cpu1 = cpu_secs();

	struct stats tot = {0};
	long established = 0;
	for (int i = 0; i < opt.threads; i++) {
		struct stats *s = &threads[i].st;
		tot.conns_started += s->conns_started;
		tot.conns_done += s->conns_done;
		tot.conns_failed += s->conns_failed;
		tot.resumed += s->resumed;
		tot.handshakes += s->handshakes;
		tot.msgs_ok += s->msgs_ok;
		tot.msgs_failed += s->msgs_failed;
		merge_lat(&tot.txn, &s->txn);
		merge_lat(&tot.setup, &s->setup);
		tot.errors += s->errors;
		for (int k = 0; k < s->nerr; k++) {
			int j = 0;
			while (j < tot.nerr && strcmp(tot.err[j].key, s->err[k].key) != 0)
				j++;
			if (j == tot.nerr) {
				if (tot.nerr == MAX_ERRKEYS)
					continue;
				memcpy(tot.err[j].key, s->err[k].key, sizeof tot.err[j].key);
				tot.err[j].n = 0;
				tot.nerr++;
			}
			tot.err[j].n += s->err[k].n;
		}
		established += threads[i].established;
	}

	/* wait for the sink */
	double t_end = t_client;
	long sink_got = -1, expected = tot.msgs_ok * opt.rcpts;
	int sink_complete = 1;
	if (opt.sink) {
		double limit = t_client + opt.sink_timeout;
		for (;;) {
			long c2 = sink_count();
			if (c2 >= 0)
				sink_got = c2 - sink_base;
			if (sink_got >= expected) {
				t_end = now();
				break;
			}
			if (now() > limit || stop_flag) {
				t_end = now();
				sink_complete = 0;
				break;
			}
			usleep(10000);
		}
	}

	qsort(tot.txn.v, tot.txn.n, sizeof *tot.txn.v, cmp_u32);
	qsort(tot.setup.v, tot.setup.n, sizeof *tot.setup.v, cmp_u32);
	double wall_client = t_client - t_start, wall = t_end - t_start;
	double cpu = cpu1 - cpu0;
	double msgs_s = wall > 0 ? tot.msgs_ok / wall : 0;
	double accept_s = wall_client > 0 ? tot.msgs_ok / wall_client : 0;
	double conns_s = wall_client > 0 ? tot.conns_done / wall_client : 0;
	const char *mode = opt.mode == M_IDLE ? "idle" : opt.mode == M_HANDSHAKE ? "handshake" : "load";
	char errs[2048] = "-";
	size_t el = 0;
	for (int k = 0; k < tot.nerr && el < sizeof errs - 64; k++)
		el += (size_t)snprintf(errs + el, sizeof errs - el, "%s%s:%ld", k ? "," : "", tot.err[k].key, tot.err[k].n);

	if (!opt.quiet) {
		fprintf(stderr,
			"pgen %s: %s:%d %s, %d connections (%d threads), %d msgs/conn of %d bytes, %d rcpts%s\n",
			mode, opt.host, opt.port, opt.starttls == 1 ? "STARTTLS" : opt.starttls == 2 ? "plain" : "implicit TLS",
			opt.conns, opt.threads, opt.msgs, opt.size, opt.rcpts, opt.resume ? ", resumption" : "");
		fprintf(stderr, "  messages:    %ld ok, %ld failed; %.1f msgs/s%s (accepted at %.1f/s)\n",
			tot.msgs_ok, tot.msgs_failed, msgs_s, opt.sink ? " through the sink" : "", accept_s);
		fprintf(stderr, "  connections: %ld done, %ld failed, %ld resumed; %.1f conns/s\n",
			tot.conns_done, tot.conns_failed, tot.resumed, conns_s);
		fprintf(stderr, "  latency:     transaction p50 %.2f ms p99 %.2f ms; set-up p50 %.2f ms p99 %.2f ms\n",
			pct(&tot.txn, 0.5), pct(&tot.txn, 0.99), pct(&tot.setup, 0.5), pct(&tot.setup, 0.99));
		fprintf(stderr, "  time:        %.2f s client, %.2f s until the sink had everything%s\n",
			wall_client, wall, opt.sink ? (sink_complete ? "" : " (INCOMPLETE)") : " (no sink)");
		fprintf(stderr, "  client CPU:  %.2f s (%.0f%% of one core)\n", cpu, wall_client > 0 ? 100 * cpu / wall_client : 0);
		if (opt.mode == M_IDLE)
			fprintf(stderr, "  idle:        %ld connections were held\n", established);
		fprintf(stderr, "  errors:      %s\n", errs);
	}
	printf("pgen label=%s mode=%s conns=%d threads=%d msgs_per_conn=%d size=%d rcpts=%d resume=%d "
	       "msgs_ok=%ld msgs_failed=%ld msgs_per_s=%.1f accept_per_s=%.1f conns_done=%ld conns_failed=%ld "
	       "conns_per_s=%.1f resumed=%ld handshakes=%ld txn_p50_ms=%.2f txn_p99_ms=%.2f setup_p50_ms=%.2f "
	       "setup_p99_ms=%.2f client_s=%.3f wall_s=%.3f sink_rcpts=%ld sink_complete=%d held=%ld "
	       "cpu_s=%.3f cpu_pct=%.0f errors=%ld errs=%s\n",
	       opt.label, mode, opt.conns, opt.threads, opt.msgs, opt.size, opt.rcpts, opt.resume,
	       tot.msgs_ok, tot.msgs_failed, msgs_s, accept_s, tot.conns_done, tot.conns_failed, conns_s,
	       tot.resumed, tot.handshakes, pct(&tot.txn, 0.5), pct(&tot.txn, 0.99), pct(&tot.setup, 0.5),
	       pct(&tot.setup, 0.99), wall_client, wall, sink_got, sink_complete, established,
	       cpu, wall_client > 0 ? 100 * cpu / wall_client : 0, tot.errors, errs);
	fflush(stdout);
	SSL_CTX_free(ctx);
	return (tot.errors > 0 || !sink_complete) ? 1 : 0;
}
