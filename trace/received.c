/*
 * received.c - the Received header Postern prepends to every message. It
 * names what the abuse desk needs first: client address and HELO, the TLS
 * version and cipher, the client certificate fingerprint, the queue id.
 */
#include "trace/trace.h"

#include <stdio.h>
#include <string.h>

void trace_date(char out[64], time_t t)
{
	struct tm tm;
	localtime_r(&t, &tm);
	strftime(out, 64, "%a, %d %b %Y %H:%M:%S %z", &tm);
}

/* RFC 3848: ESMTP + S for TLS + A for AUTH. */
static const char *protocol_name(const struct trace_received *r)
{
	if (!r->esmtp)
		return "SMTP";
	if (r->tls_version && r->authenticated)
		return "ESMTPSA";
	if (r->tls_version)
		return "ESMTPS";
	if (r->authenticated)
		return "ESMTPA";
	return "ESMTP";
}

void trace_received(struct buf *out, const struct trace_received *r)
{
	char date[64];
	trace_date(date, r->time);
	buf_printf(out, "Received: from %s (%s [%s])\r\n", r->helo && *r->helo ? r->helo : "unknown",
	           r->client_name ? r->client_name : "unknown", r->client_ip);
	if (r->tls_version)
		buf_printf(out, "\t(using %s with cipher %s (%d/%d bits))\r\n", r->tls_version,
		           r->tls_cipher ? r->tls_cipher : "unknown", r->tls_bits, r->tls_bits);
	if (r->cert_fingerprint)
		buf_printf(out, "\t(client certificate SHA256:%s)\r\n", r->cert_fingerprint);
	if (r->authenticated && r->show_account && r->account)
		buf_printf(out, "\t(authenticated as %s)\r\n", r->account);
	buf_printf(out, "\tby %s (Postern) with %s id %s", r->hostname, protocol_name(r), r->qid);
	if (r->single_rcpt)
		buf_printf(out, "\r\n\tfor <%s>", r->single_rcpt);
	buf_printf(out, ";\r\n\t%s\r\n", date);
}
