/*
 * records.c - the trace store beside the spool: the start-up checks that
 * keep "a record stands for an accepted message, and every accepted
 * message has one" true across crashes and restores, the riders that make
 * a batch's records durable in the same step as its queue files, and the
 * delivery results.
 *
 * Ownership: nothing here outlives its call but what the store copies.
 */
#include "server/daemon.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A queue file enters queue/ only after its record is durable, so one
 * without a record comes from elsewhere (a trace database restored from
 * an older copy, tracing switched on over an existing queue); relaying it
 * would relay untraced mail. They go to hold/ for the operator. Bounces
 * the relay wrote itself (from <>) have no record by design. One read of
 * the store answers for the whole queue. */
static void records_hold_untraced(struct daemon *d)
{
	char dir[4096], path[4096 + 256], err[512];
	snprintf(dir, sizeof(dir), "%s/queue", d->conf->spool_dir);
	DIR *dp = opendir(dir);
	if (!dp)
		return;
	char **qids = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	while ((e = readdir(dp)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		struct relay_envelope env;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (relay_envelope_read(path, &env) < 0)
			continue; /* the runner logs what it cannot read */
		bool bounce = env.from[0] == '\0';
		relay_envelope_free(&env);
		if (bounce)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			qids = xrealloc(qids, cap * sizeof(*qids));
		}
		qids[n++] = str_dup(e->d_name);
	}
	closedir(dp);
	bool *known = xcalloc(n ? n : 1, sizeof(*known));
	if (n && trace_known_qids(d->conf->trace_db, (const char *const *)qids, n, known, err,
	                          sizeof(err)) < 0) {
		/* The store cannot say: leave the queue as it is. */
		log_err("event=trace_error op=start_check error=\"%s\"", err);
	} else {
		for (size_t i = 0; i < n; i++) {
			if (known[i])
				continue;
			int rc = relay_spool_hold(d->spool, qids[i]);
			log_warn("event=held qid=%s reason=\"no trace record\" result=%s", qids[i],
			         rc == 0 ? "held" : strerror(-rc));
		}
	}
	for (size_t i = 0; i < n; i++)
		free(qids[i]);
	free(qids);
	free(known);
}

/* Delivery results go to the trace record of the message. */
void records_relay_result(void *arg, const char *qid, const char *rcpt, const char *event,
                                const char *relay, const char *reply)
{
	struct daemon *d = arg;
	struct trace_delivery td = {
		.qid = qid, .rcpt = rcpt, .status = event, .relay = relay, .reply = reply,
		.time = time(NULL),
	};
	trace_store_delivery(d->trace, &td);
}

/* A crash between a record's commit and its file's rename leaves the file
 * in tmp/ (no client heard 250) and a record standing for no accepted
 * message. The records are taken back, durably, before the files go, so
 * a second crash loses neither; if the store cannot write, the files
 * stay for the next start. */
static void records_drop_unacknowledged(struct daemon *d)
{
	const char *const *names;
	size_t n = relay_spool_unacknowledged(d->spool, &names);
	if (n && d->trace) {
		if (trace_store_retract_now(d->trace, names, n) < 0) {
			log_warn("event=spool_clean files=%zu note=\"kept in tmp/ until their records"
			         " can be taken back\"", n);
			return;
		}
	}
	relay_spool_drop_unacknowledged(d->spool);
}

/* The spool's riders are trace records: a batch's records go to the trace
 * store's writer while the spool syncs the files, in one transaction. */
static void *records_rider_start(void *ctx, void *const *riders, size_t n)
{
	return trace_store_submit(ctx, (struct trace_entry *const *)riders, n);
}

static void records_rider_finish(void *ctx, void *started, void *const *riders, int *status,
                                  size_t n)
{
	trace_store_wait(ctx, started);
	for (size_t i = 0; i < n; i++)
		status[i] = trace_entry_status(riders[i]);
}

/* Records written for files that then failed: a record stands for an
 * accepted message, so they go before the clients hear 451. */
static void records_rider_cancel(void *ctx, void *const *riders, size_t n)
{
	const char **qids = xcalloc(n, sizeof(*qids));
	for (size_t i = 0; i < n; i++)
		qids[i] = trace_entry_qid(riders[i]);
	if (trace_store_retract_now(ctx, qids, n) < 0)
		log_err("event=trace_error op=retract records=%zu note=\"tried again\"", n);
	free(qids);
}


int records_start(struct daemon *d)
{
	if (d->trace) {
		records_hold_untraced(d);
		const struct relay_riders records = { records_rider_start, records_rider_finish,
			                              records_rider_cancel, d->trace };
		relay_spool_set_riders(d->spool, &records);
	} else {
		log_warn("event=trace_disabled note=\"messages are accepted without a trace record\"");
	}
	records_drop_unacknowledged(d);
	return 0;
}
