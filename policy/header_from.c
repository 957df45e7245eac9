/*
 * header_from.c - the addresses of the From header field (RFC 5322 3.6.2)
 * and the check that the authenticated account owns each of them.
 *
 * From may be folded, may hold "Display Name <addr>", bare addr-specs,
 * comments, quoted strings, encoded words in the display name and groups
 * ("team: a@x, b@y;"). Every mailbox of every From field is checked, so a
 * second From field or a second mailbox cannot smuggle a forged address
 * past the first one. Anything unparsable yields an address that no one
 * owns: the check fails closed.
 *
 * Nothing returned needs freeing; the unfolded copy is freed here.
 */
#include "policy/policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/common.h"
#include "msg/msg.h"

typedef void addr_fn(const char *addr, size_t alen, void *arg);

struct mailbox {
	struct buf plain;        /* text outside <>, without comments or blanks */
	struct buf angle;        /* text inside <> */
	bool in_angle, have_angle;
};

static void emit(struct mailbox *mb, addr_fn *fn, void *arg, int *count)
{
	const char *a = mb->have_angle ? mb->angle.data : mb->plain.data;
	size_t n = mb->have_angle ? mb->angle.len : mb->plain.len;
	/* Obsolete source route "<@relay:user@example.org>": keep the address. */
	if (mb->have_angle && n && a[0] == '@') {
		const char *colon = memchr(a, ':', n);
		if (colon) {
			n -= (size_t)(colon + 1 - a);
			a = colon + 1;
		}
	}
	if (n || mb->have_angle || mb->in_angle) {
		fn(n ? a : "", n, arg);
		(*count)++;
	}
	mb->plain.len = mb->angle.len = 0;
	mb->in_angle = mb->have_angle = false;
}

static void put(struct mailbox *mb, char c)
{
	buf_append(mb->in_angle ? &mb->angle : &mb->plain, &c, 1);
}

/* Skips a comment starting at s[i] == '(' (nested, with quoted pairs). */
static size_t skip_comment(const char *s, size_t n, size_t i)
{
	int depth = 0;
	for (; i < n; i++) {
		if (s[i] == '\\')
			i++;
		else if (s[i] == '(')
			depth++;
		else if (s[i] == ')' && --depth == 0)
			return i;
	}
	return n;
}

/* Copies a quoted string or domain literal, delimiters included. */
static size_t copy_until(struct mailbox *mb, const char *s, size_t n, size_t i, char close)
{
	put(mb, s[i++]);
	for (; i < n; i++) {
		if (s[i] == '\\' && i + 1 < n)
			put(mb, s[i++]);
		put(mb, s[i]);
		if (s[i] == close)
			return i;
	}
	return n;
}

static void parse_value(const char *s, size_t n, addr_fn *fn, void *arg, int *count)
{
	struct mailbox mb = { 0 };
	buf_init(&mb.plain);
	buf_init(&mb.angle);
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '(')
			i = skip_comment(s, n, i);
		else if (c == '"')
			i = copy_until(&mb, s, n, i, '"');
		else if (c == '[')
			i = copy_until(&mb, s, n, i, ']');
		else if (c == ' ' || c == '\t')
			continue;
		else if (c == '<' && !mb.in_angle) {
			mb.in_angle = true;
			mb.angle.len = 0;
		} else if (c == '>' && mb.in_angle) {
			mb.in_angle = false;
			mb.have_angle = true;
		} else if (mb.in_angle)
			put(&mb, c);
		else if (c == ':')
			mb.plain.len = 0;  /* the group's display name */
		else if (c == ',' || c == ';')
			emit(&mb, fn, arg, count);
		else
			put(&mb, c);
	}
	emit(&mb, fn, arg, count);
	buf_free(&mb.plain);
	buf_free(&mb.angle);
}

/* Every From field of the header section (msg/: the one reader of header
 * sections), unfolded, through parse_value. */
static int from_walk(const char *h, size_t len, addr_fn *fn, void *arg, unsigned *fields)
{
	int count = 0;
	*fields = 0;
	size_t hlen, body, pos = 0;
	msg_header_split(h, len, &hlen, &body);
	struct msg_field f;
	struct buf value;
	buf_init(&value);
	while (msg_field_next(h, hlen, &pos, &f)) {
		if (!msg_field_is(&f, "From"))
			continue;
		(*fields)++;
		value.len = 0;
		msg_field_unfold(&f, &value);
		parse_value(value.data ? value.data : "", value.len, fn, arg, &count);
	}
	buf_free(&value);
	return *fields ? count : -1;
}

int policy_header_from_each(const char *h, size_t len,
                            void (*fn)(const char *addr, size_t alen, void *arg), void *arg)
{
	unsigned fields;
	return from_walk(h, len, fn, arg, &fields);
}

struct owned_arg {
	const struct policy_sendermap *map;
	const char *account;
	bool all_owned;
};

static void check_one(const char *addr, size_t alen, void *arg)
{
	struct owned_arg *o = arg;
	char *a = str_ndup(addr, alen);
	if (!policy_sender_owned(o->map, o->account, a) || alen == 0)
		o->all_owned = false;
	free(a);
}

int policy_check_header_from(const struct policy_conf *pc, const struct policy_session *ps,
                             const char *header_block, size_t len, struct policy_verdict *v)
{
	*v = (struct policy_verdict){ 0 };
	if (!pc->check_header_from || !ps->authenticated || !ps->account)
		return 0;
	struct owned_arg o = { .map = pc->sendermap, .account = ps->account, .all_owned = true };
	unsigned fields;
	int n = from_walk(header_block, len, check_one, &o, &fields);
	if (fields > 1) {
		/* RFC 5322 3.6: exactly one From field. A reader may show either,
		 * so a second one is a way past the check, never a second chance. */
		v->code = 554;
		v->enh = "5.6.0";
		v->text = "Message has more than one From field (RFC 5322 3.6)";
		v->rule = "header_from_multiple";
	} else if (n <= 0) {
		v->code = 550;
		v->enh = "5.6.0";
		v->text = "Message has no From address";
		v->rule = "header_from_missing";
	} else if (!o.all_owned) {
		char acc[96];
		str_sanitize(acc, sizeof(acc), ps->account, strlen(ps->account));
		snprintf(v->textbuf, sizeof(v->textbuf), "From header address not owned by %s", acc);
		v->code = 553;
		v->enh = "5.7.1";
		v->text = v->textbuf;
		v->rule = "header_from_mismatch";
	}
	return v->code;
}
