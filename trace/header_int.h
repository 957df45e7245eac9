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

/* RFC 5322 caps a line at 998 octets; a longer Message-ID is cut here by
 * signer and verifier alike. */
#define TRACE__MSGID_MAX 998

/* A header line is a field when its colon comes within this many bytes
 * (name and the whitespace before the colon). Past that, scanner and
 * finder alike take it for the end of the header block. */
#define TRACE__FIELD_NAME_MAX 998

/* A Message-ID value as the MAC sees it: CR, LF and NUL dropped (unfolding),
 * each run of SP/HTAB turned into one SP (refolding may change it), none
 * at either end. Fed piecewise as the bytes arrive. */
struct trace__msgid {
	char v[TRACE__MSGID_MAX + 1];
	size_t len;
	bool space;  /* whitespace seen since the last byte kept */
};
void trace__msgid_init(struct trace__msgid *m);
void trace__msgid_add(struct trace__msgid *m, const char *p, size_t n);

/* Gate names and key ids: [A-Za-z0-9._-], 1..255 and 1..32 characters. */
bool trace__gate_valid(const char *s, size_t n);
bool trace__key_id_valid(const char *s, size_t n);

/* Checks one X-Postern-Trace value (after the colon, folding included)
 * against our gate and keys; message_id is the normalised Message-ID of
 * the message that carries it. Fills f's trace_id, time, gate and key_id
 * when the value parses (they are "" otherwise); leaves f->message_id
 * alone. Returns the verdict (never TRACE_MISSING). */
enum trace_verdict trace__header_check(const char *value, size_t len, const char *gate,
                                       const struct trace_key *keys, size_t nkeys,
                                       const char *message_id, struct trace_found *f);

/* Input bytes the scanner has taken but not yet output (for the tests). */
size_t trace__scan_held(const struct trace_scan *ts);

#endif
