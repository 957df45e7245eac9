/*
 * header_int.h - what the trace header's files (header.c, scan.c, find.c)
 * share and nobody else needs: the Message-ID normaliser both the signer
 * and the verifier must apply identically, the check of one header value,
 * and a probe the unit test uses to see that the scanner holds nothing back.
 *
 * Ownership: everything here writes into the caller's structures; nothing
 * allocates.
 */
#ifndef POSTERN_TRACE_HEADER_INT_H
#define POSTERN_TRACE_HEADER_INT_H

#include <stdbool.h>
#include <stddef.h>
#include "trace/trace.h"
#include "msg/msg.h"

/* RFC 5322 caps a line at 998 octets; a longer Message-ID is cut here by
 * signer and verifier alike. */
#define TRACE__MSGID_MAX 998

/* A header line is a field when its colon comes within this many bytes
 * (name and the whitespace before the colon). Past that, scanner and
 * finder alike take it for the end of the header block. */
#define TRACE__FIELD_NAME_MAX MSG_FIELD_NAME_MAX  /* msg.h: one definition */

/* A Message-ID value as the MAC sees it, in the two forms, computed in
 * one pass as the bytes arrive (fed piecewise, any split):
 *  v   (v=2) the msg-id alone: SP, HTAB, CR, LF and NUL dropped (folding,
 *      even where RFC 5322 allows none), then from the last '<' seen
 *      before a '>' up to that '>' (a comment or anything else around the
 *      msg-id dropped), or everything when there is no '<';
 *  v1  (v=1, headers issued before v=2) CR, LF and NUL dropped, each run of
 *      SP/HTAB one SP, none at either end.
 * Both are cut at TRACE__MSGID_MAX bytes, the same way on either side. */
struct trace__msgid {
	char v[TRACE__MSGID_MAX + 1];
	size_t len;
	int angle;   /* 0 before '<', 1 after it, 2 after the '>' that closes it */
	char v1[TRACE__MSGID_MAX + 1];
	size_t len1;
	bool space;  /* v1: whitespace seen since the last byte kept */
	bool full1;  /* v1: no room for what follows that whitespace */
};
void trace__msgid_init(struct trace__msgid *m);
void trace__msgid_add(struct trace__msgid *m, const char *p, size_t n);

/* The form a header of this version signs. */
const char *trace__msgid_form(const struct trace__msgid *m, int version);

/* Gate names and key ids: [A-Za-z0-9._-], 1..255 and 1..32 characters. */
bool trace__gate_valid(const char *s, size_t n);
bool trace__key_id_valid(const char *s, size_t n);

/* trace_header_make() for a given version (1 only for the tests of what
 * was issued before v=2). */
void trace__header_make(struct buf *out, const struct trace_key *key, const char *gate,
                        const char *trace_id, int64_t time, const char *message_id,
                        int version);

/* A message's Message-ID fields (RFC 5322 allows one; downstream
 * reordering makes the first one no better than the others). */
#define TRACE__MSGIDS_MAX 4

/* Checks one X-Postern-Trace value (after the colon, folding included)
 * against our gate and keys, on each of the nids Message-IDs of the
 * message that carries it (none: the message has no Message-ID). Fills f's
 * version, trace_id, time, gate, key_id and mac when the value parses
 * (zeroed otherwise), and f->message_id with the one that verified, else
 * the first ("" when nids is 0). Leaves the rest of f alone. Returns the
 * verdict (never TRACE_MISSING or TRACE_COPIED). */
enum trace_verdict trace__header_check(const char *value, size_t len, const char *gate,
                                       const struct trace_key *keys, size_t nkeys,
                                       const struct trace__msgid *ids, size_t nids,
                                       struct trace_found *f);

/* Input bytes the scanner has taken but not yet output (for the tests). */
size_t trace__scan_held(const struct trace_scan *ts);

#endif
