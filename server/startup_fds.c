/*
 * startup_fds.c - max_connections against RLIMIT_NOFILE. A connection
 * holds its socket and, while its message streams in, its spool file; the
 * daemon holds its own descriptors besides. Beyond the limit accept()
 * fails with EMFILE and the listener spins or stalls, so the connection
 * limit (421 4.7.0 at connect, which itself needs a descriptor for a
 * moment) must come first. We take the soft limit up to the hard one;
 * when that is still too small we lower max_connections to what fits
 * rather than refuse to start: the number is a ceiling that protects the
 * machine, not a promise to clients, and a gate that stays down over it
 * serves nobody. The warning says what to raise to keep the number.
 *
 * Ownership: nothing allocated.
 */
#include "server/startup.h"
#include "server/daemon.h"
#include "common/common.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#define FDS_PER_CONNECTION 2
/* stdio, the log, the trace store's three files and a reader's at start,
 * a reload's configuration and sender map, queue-directory fsyncs */
#define FDS_DAEMON 32
/* per loop: epoll, eventfd, signal pipe, DNS sockets, the reserve
 * descriptor, and the smtps refusals waiting for their handshake */
#define FDS_PER_LOOP (8 + CONN_REFUSALS_MAX)
/* per relay worker: the downstream socket, the queue file, a Maildir file */
#define FDS_PER_RELAY_WORKER 3
/* the thread pool's SASL checks each open the sasldb (4 threads, libuv's
 * default, at 2 each) */
#define FDS_SASL 8

/* The kernel's ceiling when the hard limit is "unlimited". */
static rlim_t fds_nr_open(void)
{
	unsigned long v = 0;
	FILE *f = fopen("/proc/sys/fs/nr_open", "re");
	if (f) {
		if (fscanf(f, "%lu", &v) != 1)
			v = 0;
		fclose(f);
	}
	return v ? (rlim_t)v : 1048576;
}

int startup_fd_limit(struct conf *c, unsigned nloops, char *err, size_t errlen)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
		snprintf(err, errlen, "getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
		return -1;
	}
	if (rl.rlim_cur != rl.rlim_max) {
		struct rlimit raised = rl;
		raised.rlim_cur = rl.rlim_max == RLIM_INFINITY ? fds_nr_open() : rl.rlim_max;
		if (raised.rlim_cur > rl.rlim_cur && setrlimit(RLIMIT_NOFILE, &raised) == 0)
			rl = raised;
	}
	unsigned long long have = rl.rlim_cur;
	unsigned long long own = FDS_DAEMON + FDS_SASL +
		(unsigned long long)nloops * (FDS_PER_LOOP + c->nlistens) +
		(unsigned long long)c->relay_workers * FDS_PER_RELAY_WORKER;
	unsigned long long need = own + (unsigned long long)c->max_connections * FDS_PER_CONNECTION;
	if (need <= have)
		return 0;
	unsigned long long fit = have > own ? (have - own) / FDS_PER_CONNECTION : 0;
	if (fit < nloops) {
		snprintf(err, errlen, "%s: limits { max_connections }: RLIMIT_NOFILE is %llu (hard"
		         " limit), too low for the %llu descriptors the daemon needs for itself and one"
		         " connection per loop: raise it (LimitNOFILE= in the unit, ulimit -n); %u"
		         " connections need %llu", c->path, have, own + (unsigned long long)nloops *
		         FDS_PER_CONNECTION, c->max_connections, need);
		return -1;
	}
	log_warn("event=fd_limit max_connections=%u lowered_to=%llu nofile=%llu needed=%llu"
	         " note=\"%d descriptors per connection and %llu for the daemon; raise"
	         " LimitNOFILE= (ulimit -n) to %llu to keep %u\"", c->max_connections, fit, have,
	         need, FDS_PER_CONNECTION, own, need, c->max_connections);
	c->max_connections = (unsigned)fit;
	return 0;
}
