/*
 * trace.h - who sent what: the Received header now; the trace store,
 * the signed trace header and lookups later.
 *
 * Ownership: builders append to the caller's buffer.
 */
#ifndef POSTERN_TRACE_H
#define POSTERN_TRACE_H

#include <stdbool.h>
#include <time.h>
#include "common/common.h"

struct trace_received {
	const char *helo;         /* as the client gave it */
	bool esmtp;               /* EHLO rather than HELO */
	const char *client_ip;
	const char *client_name;  /* verified reverse name, or NULL */
	const char *tls_version;  /* NULL without TLS */
	const char *tls_cipher;
	int tls_bits;
	const char *cert_fingerprint; /* client certificate SHA-256, or NULL */
	bool authenticated;
	const char *account;      /* named only when show_account is set */
	bool show_account;
	const char *hostname;     /* ours */
	const char *qid;
	const char *single_rcpt;  /* "for" clause when exactly one recipient */
	time_t time;
};

/* Appends a folded "Received:" header (RFC 5321 4.4, RFC 3848 protocol
 * names) ending in CRLF. */
void trace_received(struct buf *out, const struct trace_received *r);

/* RFC 5322 date-time in local time with numeric zone. out holds 64. */
void trace_date(char out[64], time_t t);

#endif
