/*
 * scan.c - the message on its way to the spool: bytes pass through, the
 * first Message-ID is noted, the trace header goes in at the end of the
 * header block, and a SHA-256 runs over the caller's prefix and all output.
 *
 * Only the start of a header line is ever held back, and only across
 * feeds: its name up to the colon (at most TRACE__FIELD_NAME_MAX bytes),
 * or a CR, until we know whether the line is a field or ends the header
 * block (the trace header must precede it). Headers stream through; the
 * Message-ID is copied (normalised, capped) as it passes. After the header
 * block every feed is one append and one digest update.
 *
 * A message without a Message-ID field gets the one the caller supplied
 * (trace_scan_add_message_id(): the submission listeners, RFC 6409 8.3)
 * at the end of its header block, ahead of the trace header. Left to a
 * later MTA, it would be added after the MAC was made: the header would
 * then bind nothing but "no Message-ID", which any message without one
 * shares, and the desk could not tell the message from a copy.
 *
 * Without a key (trace headers off) no trace header is inserted; the hash
 * and the Message-ID still come out, a missing Message-ID is still added
 * and a client's X-Postern-Trace is still renamed. trace_scan_new() copies
 * key and gate; the object is freed (and the key copy wiped) by
 * trace_scan_free().
 */
#include "trace/trace.h"
#include "trace/header_int.h"

#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

enum scan_state { SCAN_HEADER, SCAN_BODY, SCAN_DONE };

/* Where we are in the current header line. */
enum line_state {
	LINE_START,  /* nothing seen yet */
	LINE_NAME,   /* field name characters, held back */
	LINE_WSP,    /* a name and whitespace, held back: only ':' may follow */
	LINE_CR,     /* a CR, held back: the empty line if LF follows */
	LINE_IN,     /* in a field (after its colon, or a continuation) */
};

struct trace_scan {
	EVP_MD_CTX *md;
	bool signing;
	struct trace_key key;
	char *gate;
	char *add_msgid;    /* added when the message has no Message-ID, or NULL */
	char trace_id[TRACE_ID_LEN + 1];
	int64_t time;
	enum scan_state state;
	bool fed;
	enum line_state line;
	bool seen_field;    /* continuation lines need a field to continue */
	bool in_msgid;      /* the current field is the first Message-ID */
	bool msgid_seen;
	size_t name_pos;    /* characters of "message-id" matched; more: no match */
	size_t trace_pos;   /* the same for "x-postern-trace" */
	struct trace__msgid msgid;
	size_t nhold;       /* the start of a line held back from earlier feeds */
	char hold[TRACE__FIELD_NAME_MAX];
	char sha256[65];
};

static const char msgid_name[] = "message-id";
static const char trace_name[] = "x-postern-trace";
/* A client's own X-Postern-Trace field would otherwise sit beside ours: a
 * copy of someone else's genuine header could frame them. It is kept, under
 * a name that is evidence (find.c quotes it) and never an attribution; also
 * when this gate signs nothing, since a key may be configured later. */
static const char trace_rename[] = "X-Postern-Trace-Prior:";

struct trace_scan *trace_scan_new(const struct trace_key *key, const char *gate,
                                  const char *trace_id, int64_t time)
{
	struct trace_scan *ts = xcalloc(1, sizeof(*ts));
	ts->md = EVP_MD_CTX_new();
	if (!ts->md || EVP_DigestInit_ex(ts->md, EVP_sha256(), NULL) != 1)
		fatal("trace: SHA-256 unavailable");
	if (key) {
		/* Checked here so that a bad gate fails at the first message,
		 * not after part of it went to the spool. */
		if (!gate || !trace__gate_valid(gate, strlen(gate)) || !trace_id ||
		    strlen(trace_id) != TRACE_ID_LEN ||
		    strspn(trace_id, "abcdefghijklmnopqrstuvwxyz234567") != TRACE_ID_LEN ||
		    time < 0)
			fatal("trace: invalid gate name, trace id or time");
		ts->signing = true;
		ts->key = *key;
		ts->gate = str_dup(gate);
		memcpy(ts->trace_id, trace_id, TRACE_ID_LEN + 1);
		ts->time = time;
	}
	ts->state = SCAN_HEADER;
	ts->line = LINE_START;
	trace__msgid_init(&ts->msgid);
	return ts;
}

void trace_scan_free(struct trace_scan *ts)
{
	if (!ts)
		return;
	EVP_MD_CTX_free(ts->md);
	free(ts->gate);
	free(ts->add_msgid);
	OPENSSL_cleanse(ts, sizeof(*ts));
	free(ts);
}

void trace_scan_add_message_id(struct trace_scan *ts, const char *message_id)
{
	if (ts->fed)
		fatal("trace_scan_add_message_id after message bytes");
	if (!message_id[0] || strpbrk(message_id, "\r\n"))
		fatal("trace: a Message-ID to add must be one line");
	free(ts->add_msgid);
	ts->add_msgid = str_dup(message_id);
}

void trace_scan_prefix(struct trace_scan *ts, const void *data, size_t len)
{
	if (ts->fed)
		fatal("trace_scan_prefix after message bytes");
	if (len && EVP_DigestUpdate(ts->md, data, len) != 1)
		fatal("trace: SHA-256 update failed");
}

/* Whether insert_header() will write anything. */
static bool inserting(const struct trace_scan *ts)
{
	return ts->signing || (ts->add_msgid && !ts->msgid_seen);
}

/* before_empty: the header block ends with the empty line (or the input).
 * Otherwise it ends with a line that is no field; when that is the first
 * line the message has no header block at all, and our fields get an
 * empty line of their own: a first line starting with whitespace would
 * otherwise continue them, and all the input is body anyway. */
static void insert_header(struct trace_scan *ts, struct buf *out, bool before_empty)
{
	bool any = inserting(ts);
	if (ts->add_msgid && !ts->msgid_seen) {
		buf_puts(out, "Message-ID: ");
		buf_puts(out, ts->add_msgid);
		buf_puts(out, "\r\n");
		trace__msgid_add(&ts->msgid, ts->add_msgid, strlen(ts->add_msgid));
		ts->msgid_seen = true;
	}
	if (ts->signing)
		trace_header_make(out, &ts->key, ts->gate, ts->trace_id, ts->time, ts->msgid.v);
	if (any && !before_empty && !ts->seen_field)
		buf_append(out, "\r\n", 2);
	ts->state = SCAN_BODY;
}

static bool name_char(char c)
{
	return c > 32 && c < 127 && c != ':';
}

static void match_name(struct trace_scan *ts, char c)
{
	if (c >= 'A' && c <= 'Z')
		c = (char)(c + 32);
	if (ts->name_pos < sizeof(msgid_name) - 1 && c == msgid_name[ts->name_pos])
		ts->name_pos++;
	else
		ts->name_pos = sizeof(msgid_name); /* no match, for good */
	if (ts->trace_pos < sizeof(trace_name) - 1 && c == trace_name[ts->trace_pos])
		ts->trace_pos++;
	else
		ts->trace_pos = sizeof(trace_name);
}

/* Consumes header-block bytes; returns where the body starts (end when the
 * header block goes on). The header block is the run of lines that are
 * fields ("name:", the name within TRACE__FIELD_NAME_MAX bytes) or their
 * continuations; it ends before the first line that is neither (the empty
 * line, or anything else: a message without headers, say). A line is held
 * back only until we know which it is: the streaming form of the one
 * definition in msg/msg.h (test_scan_agrees_with_msg holds them together). */
static const char *scan_header(struct trace_scan *ts, const char *p, const char *end,
                               struct buf *out)
{
	const char *run = p;   /* first byte not yet output */
	const char *line = p;  /* the current line's first byte in this feed */
	bool empty = false;    /* the header block ends with the empty line */
	while (p < end) {
		if (ts->line == LINE_IN) {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			const char *stop = nl ? nl + 1 : end;
			if (ts->in_msgid)
				trace__msgid_add(&ts->msgid, p, (size_t)(stop - p));
			p = stop;
			if (nl) {
				ts->line = LINE_START;
				line = p;
			}
			continue;
		}
		char c = *p;
		if (ts->line != LINE_START &&
		    ts->nhold + (size_t)(p - line) >= TRACE__FIELD_NAME_MAX)
			goto end_of_header;
		switch (ts->line) {
		case LINE_START:
			if (c == '\n') {
				empty = true;
				goto end_of_header;
			}
			if (c == '\r') {
				ts->line = LINE_CR;
				p++;
				continue;
			}
			if ((c == ' ' || c == '\t') && ts->seen_field) {
				ts->line = LINE_IN; /* continuation: the field goes on */
				continue;
			}
			if (!name_char(c))
				goto end_of_header;
			ts->line = LINE_NAME;
			ts->name_pos = 0;
			ts->trace_pos = 0;
			match_name(ts, c);
			p++;
			continue;
		case LINE_NAME:
			if (name_char(c)) {
				match_name(ts, c);
				p++;
				continue;
			}
			if (c == ' ' || c == '\t') {
				ts->line = LINE_WSP;
				p++;
				continue;
			}
			if (c == ':')
				break;
			goto end_of_header;
		case LINE_WSP:
			if (c == ' ' || c == '\t') {
				p++;
				continue;
			}
			if (c == ':')
				break;
			goto end_of_header;
		case LINE_CR:
			empty = c == '\n';
			goto end_of_header;
		case LINE_IN:
			goto end_of_header;
		}
		/* The colon: a field. What was held goes out ahead of run, which
		 * then still starts this line. */
		p++;
		if (ts->trace_pos == sizeof(trace_name) - 1) {
			/* Held bytes, if any, are this line's start, and line == run. */
			buf_append(out, run, (size_t)(line - run));
			buf_puts(out, trace_rename);
			run = p;
		} else {
			buf_append(out, ts->hold, ts->nhold);
		}
		ts->nhold = 0;
		ts->seen_field = true;
		ts->in_msgid = ts->name_pos == sizeof(msgid_name) - 1 && !ts->msgid_seen;
		ts->msgid_seen |= ts->in_msgid;
		ts->line = LINE_IN;
	}
	if (ts->line == LINE_IN || ts->line == LINE_START) {
		buf_append(out, run, (size_t)(end - run));
	} else {
		buf_append(out, run, (size_t)(line - run));
		memcpy(ts->hold + ts->nhold, line, (size_t)(end - line));
		ts->nhold += (size_t)(end - line);
	}
	return end;

end_of_header:
	/* Held bytes are this line's start; with any, the line began in an
	 * earlier feed and line == run. */
	buf_append(out, run, (size_t)(line - run));
	insert_header(ts, out, empty);
	buf_append(out, ts->hold, ts->nhold);
	ts->nhold = 0;
	return line;
}

static void hash_output(struct trace_scan *ts, const struct buf *out, size_t from)
{
	if (out->len > from && EVP_DigestUpdate(ts->md, out->data + from, out->len - from) != 1)
		fatal("trace: SHA-256 update failed");
}

void trace_scan_feed(struct trace_scan *ts, const void *data, size_t len, struct buf *out)
{
	if (ts->state == SCAN_DONE)
		fatal("trace_scan_feed after trace_scan_finish");
	ts->fed = true;
	if (len == 0)
		return;
	size_t from = out->len;
	const char *p = data, *end = p + len;
	if (ts->state == SCAN_HEADER)
		p = scan_header(ts, p, end, out);
	buf_append(out, p, (size_t)(end - p));
	hash_output(ts, out, from);
}

void trace_scan_finish(struct trace_scan *ts, struct buf *out)
{
	if (ts->state == SCAN_DONE)
		return;
	size_t from = out->len;
	if (ts->state == SCAN_HEADER) {
		/* Headers only: close an unterminated last field first. A line
		 * still held never became a field: we go before it. */
		if (ts->line == LINE_IN && inserting(ts))
			buf_append(out, "\r\n", 2);
		insert_header(ts, out, ts->line == LINE_START || ts->line == LINE_IN);
		buf_append(out, ts->hold, ts->nhold);
		ts->nhold = 0;
	}
	hash_output(ts, out, from);
	unsigned char md[32];
	unsigned int mdlen = 0;
	if (EVP_DigestFinal_ex(ts->md, md, &mdlen) != 1 || mdlen != sizeof(md))
		fatal("trace: SHA-256 final failed");
	codec_hex(md, sizeof(md), ts->sha256);
	ts->state = SCAN_DONE;
}

const char *trace_scan_sha256(const struct trace_scan *ts)
{
	return ts->sha256;
}

const char *trace_scan_message_id(const struct trace_scan *ts)
{
	return ts->msgid.v;
}

size_t trace__scan_held(const struct trace_scan *ts)
{
	return ts->nhold;
}
