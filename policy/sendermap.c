/*
 * sendermap.c - which sender addresses an authenticated account may use.
 *
 * File format, one rule per line ('#' starts a comment at the start of a
 * line or after blank space; blank lines are ignored; several lines for
 * one account add up):
 *
 *     <account> <target>[, <target>...]
 *     !limit <account> key=value...
 *
 * account is a SASL identity (alice, alice@example.org) or '*' (rules for
 * every account, checked after the account's own). A target is
 *     alice@example.org    that address
 *     @example.org         any address in that domain (not its subdomains)
 *     *.sales@example.org  a pattern: '*' any run, '?' one character
 *     <>                   the null sender
 *     =                    the account's own name, when it is an address
 * !limit keys: messages_per_hour, recipients_per_hour,
 * recipients_per_message (0: unlimited); they replace the listener's
 * numbers for that account.
 *
 * An account with no line of its own owns exactly its own name when that
 * is an address (never <>); a line replaces that default, so list '=' to
 * keep it. Accounts, local parts and domains compare without ASCII case:
 * RFC 5321 lets a server treat local parts case-sensitively, but no one
 * hands out Alice@ and alice@ to different people, and a case-sensitive
 * check would only refuse honest mail.
 *
 * The map owns everything in it (an arena and a bucket array);
 * policy_sendermap_free() releases it.
 */
#include "policy/policy.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "policy/policy_int.h"

#define ADDR_MAX 512  /* longer than any valid path (RFC 5321: 256) */

enum kind { K_EXACT, K_DOMAIN, K_PATTERN, K_NULL, K_SELF };

struct rule {
	struct rule *next;       /* in file order */
	enum kind kind;
	const char *s;           /* lower case; the domain without '@' for K_DOMAIN */
};

struct account {
	struct account *next;
	uint64_t hash;
	const char *name;        /* lower case */
	struct rule *rules, **tail;  /* no rules: !limit alone keeps the default */
	struct policy_account_limits limits;
};

/* Everything but the bucket array comes from an arena of large chunks:
 * hundreds of thousands of lines would otherwise mean a million mallocs
 * to load and as many frees to reload. */
struct chunk {
	struct chunk *next;
	size_t used, size;
	max_align_t data[];
};

struct policy_sendermap {
	struct account **buckets;
	size_t nbuckets;         /* a power of two */
	size_t count;
	struct account *star;
	struct chunk *chunks;
};

#define CHUNK_SIZE (256 * 1024)

static void *arena_alloc(struct policy_sendermap *m, size_t n)
{
	/* Pointers and uint64_t are the strictest members stored here. */
	n = (n + 7) & ~(size_t)7;
	struct chunk *c = m->chunks;
	if (!c || c->size - c->used < n) {
		size_t size = n > CHUNK_SIZE ? n : CHUNK_SIZE;
		c = xmalloc(sizeof(*c) + size);
		c->used = 0;
		c->size = size;
		c->next = m->chunks;
		m->chunks = c;
	}
	void *p = (char *)c->data + c->used;
	c->used += n;
	return p;
}

static void *arena_zalloc(struct policy_sendermap *m, size_t n)
{
	return memset(arena_alloc(m, n), 0, n);
}

static const char *arena_strdup(struct policy_sendermap *m, const char *s)
{
	size_t n = strlen(s) + 1;
	return memcpy(arena_alloc(m, n), s, n);
}

/* ---- lookup ------------------------------------------------------------------ */

static struct account *find(const struct policy_sendermap *m, const char *lname)
{
	uint64_t h = policy__hash(lname, strlen(lname));
	for (struct account *a = m->buckets[h & (m->nbuckets - 1)]; a; a = a->next)
		if (a->hash == h && strcmp(a->name, lname) == 0)
			return a;
	return NULL;
}

/* '*' matches any run, '?' one character; nothing else is special. */
static bool wildmatch(const char *p, const char *s)
{
	const char *star = NULL, *resume = NULL;
	while (*s) {
		if (*p == '*') {
			star = p++;
			resume = s;
		} else if (*p == '?' || *p == *s) {
			p++;
			s++;
		} else if (star) {
			p = star + 1;
			s = ++resume;
		} else {
			return false;
		}
	}
	while (*p == '*')
		p++;
	return *p == '\0';
}

static bool is_address(const char *s)
{
	const char *at = strrchr(s, '@');
	return at && at != s && at[1] != '\0';
}

static bool rule_match(const struct rule *r, const char *sender, const char *account)
{
	bool null = sender[0] == '\0';
	switch (r->kind) {
	case K_NULL:
		return null;
	case K_EXACT:
		return !null && strcmp(r->s, sender) == 0;
	case K_DOMAIN: {
		const char *at = strrchr(sender, '@');
		return at && at != sender && strcmp(at + 1, r->s) == 0;
	}
	case K_PATTERN:
		return !null && wildmatch(r->s, sender);
	case K_SELF:
		return !null && is_address(account) && strcmp(account, sender) == 0;
	}
	return false;
}

static bool rules_match(const struct account *a, const char *sender, const char *account)
{
	for (const struct rule *r = a ? a->rules : NULL; r; r = r->next)
		if (rule_match(r, sender, account))
			return true;
	return false;
}

bool policy_sender_owned(const struct policy_sendermap *m, const char *account,
                         const char *sender)
{
	char acc[ADDR_MAX], snd[ADDR_MAX];
	if (!account || !sender)
		return false;
	if (strcmp(sender, "<>") == 0)
		sender = "";
	if (!policy__lower(acc, sizeof(acc), account, strlen(account)) ||
	    !policy__lower(snd, sizeof(snd), sender, strlen(sender)))
		return false;
	const struct account *a = m ? find(m, acc) : NULL;
	if (a && a->rules) {
		if (rules_match(a, snd, acc))
			return true;
	} else if (snd[0] && is_address(acc) && strcmp(acc, snd) == 0) {
		return true;
	}
	return m && rules_match(m->star, snd, acc);
}

void policy_sendermap_limits(const struct policy_sendermap *m, const char *account,
                             struct policy_account_limits *out)
{
	char acc[ADDR_MAX];
	const struct account *a = NULL;
	memset(out, 0, sizeof(*out));
	if (m && account && policy__lower(acc, sizeof(acc), account, strlen(account)))
		a = find(m, acc);
	if (a)
		*out = a->limits;
}

/* ---- building ------------------------------------------------------------------ */

static void grow(struct policy_sendermap *m)
{
	size_t nb = m->nbuckets * 2;
	struct account **b = xcalloc(nb, sizeof(*b));
	for (size_t i = 0; i < m->nbuckets; i++) {
		struct account *a = m->buckets[i];
		while (a) {
			struct account *next = a->next;
			a->next = b[a->hash & (nb - 1)];
			b[a->hash & (nb - 1)] = a;
			a = next;
		}
	}
	free(m->buckets);
	m->buckets = b;
	m->nbuckets = nb;
}

static struct account *new_account(struct policy_sendermap *m, const char *lname)
{
	struct account *a = arena_zalloc(m, sizeof(*a));
	a->name = arena_strdup(m, lname);
	a->tail = &a->rules;
	return a;
}

static struct account *get_account(struct policy_sendermap *m, const char *lname)
{
	if (strcmp(lname, "*") == 0) {
		if (!m->star)
			m->star = new_account(m, lname);
		return m->star;
	}
	struct account *a = find(m, lname);
	if (a)
		return a;
	if (m->count >= m->nbuckets)
		grow(m);
	a = new_account(m, lname);
	a->hash = policy__hash(lname, strlen(lname));
	a->next = m->buckets[a->hash & (m->nbuckets - 1)];
	m->buckets[a->hash & (m->nbuckets - 1)] = a;
	m->count++;
	return a;
}

static void add_rule(struct policy_sendermap *m, struct account *a, enum kind kind,
                     const char *s)
{
	struct rule *r = arena_zalloc(m, sizeof(*r));
	r->kind = kind;
	r->s = s ? arena_strdup(m, s) : NULL;
	*a->tail = r;
	a->tail = &r->next;
}

/* Characters that have no business in an unquoted address we would match. */
static bool bad_char(unsigned char c)
{
	return c <= ' ' || c == 0x7f || strchr("<>()[]\\\",;:", c) != NULL;
}

/* Classifies a lower-cased target; NULL or the reason it is refused. */
static const char *parse_target(char *t, enum kind *kind, const char **s)
{
	if (strcmp(t, "<>") == 0) {
		*kind = K_NULL;
		*s = NULL;
		return NULL;
	}
	if (strcmp(t, "=") == 0) {
		*kind = K_SELF;
		*s = NULL;
		return NULL;
	}
	for (const char *p = t; *p; p++)
		if (bad_char((unsigned char)*p))
			return "unexpected character";
	bool wild = strpbrk(t, "*?") != NULL;
	const char *at = strrchr(t, '@');
	if (!at)
		return "not an address, @domain, pattern, <> or =";
	if (at[1] == '\0')
		return "empty domain";
	if (t[0] == '@' && strchr(t + 1, '@'))
		return "'@' in a domain";
	if (t[0] == '@' && !wild) {
		*kind = K_DOMAIN;
		*s = t + 1;
		return NULL;
	}
	if (wild) {
		*kind = K_PATTERN;
		*s = t;  /* "@*.example.org" needs a leading '*': added by the caller */
		return NULL;
	}
	if (at == t)
		return "empty local part";
	*kind = K_EXACT;
	*s = t;
	return NULL;
}

static const char *parse_limit(struct policy_account_limits *l, const char *tok)
{
	static const struct {
		const char *key;
		unsigned bit;
		size_t off;
	} keys[] = {
		{ "messages_per_hour", POLICY_LIMIT_MESSAGES_PER_HOUR,
		  offsetof(struct policy_account_limits, messages_per_hour) },
		{ "recipients_per_hour", POLICY_LIMIT_RECIPIENTS_PER_HOUR,
		  offsetof(struct policy_account_limits, recipients_per_hour) },
		{ "recipients_per_message", POLICY_LIMIT_RECIPIENTS_PER_MESSAGE,
		  offsetof(struct policy_account_limits, recipients_per_message) },
	};
	const char *eq = strchr(tok, '=');
	if (!eq)
		return "expected key=value";
	for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
		if (strlen(keys[i].key) != (size_t)(eq - tok) || strncmp(tok, keys[i].key, (size_t)(eq - tok)))
			continue;
		char *end;
		errno = 0;
		unsigned long v = strtoul(eq + 1, &end, 10);
		if (eq[1] < '0' || eq[1] > '9' || *end || errno || v > UINT_MAX)
			return "bad number";
		l->mask |= keys[i].bit;
		*(unsigned *)((char *)l + keys[i].off) = (unsigned)v;
		return NULL;
	}
	return "unknown limit";
}

static const char *parse_account(const char *tok)
{
	for (const char *p = tok; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			return "unexpected character in account";
	if (strchr(tok, '*') && strcmp(tok, "*") != 0)
		return "'*' must be the whole account";
	return NULL;
}

/* Splits on blank space and commas, in place. */
static char *next_token(char **p)
{
	char *s = *p + strspn(*p, " \t\r\n,");
	if (!*s)
		return NULL;
	char *e = s + strcspn(s, " \t\r\n,");
	if (*e)
		*e++ = '\0';
	*p = e;
	return s;
}

static void strip_comment(char *line)
{
	for (char *p = line; *p; p++)
		if (*p == '#' && (p == line || p[-1] == ' ' || p[-1] == '\t' || p[-1] == ',')) {
			*p = '\0';
			return;
		}
}

/* Applies one validated !limit line. */
static void apply_limits(struct account *a, const struct policy_account_limits *lim)
{
	a->limits.mask |= lim->mask;
	if (lim->mask & POLICY_LIMIT_MESSAGES_PER_HOUR)
		a->limits.messages_per_hour = lim->messages_per_hour;
	if (lim->mask & POLICY_LIMIT_RECIPIENTS_PER_HOUR)
		a->limits.recipients_per_hour = lim->recipients_per_hour;
	if (lim->mask & POLICY_LIMIT_RECIPIENTS_PER_MESSAGE)
		a->limits.recipients_per_message = lim->recipients_per_message;
}

struct tokens {
	char **v;
	size_t n, cap;
};

/* One line; NULL or why it is refused (*tok names the culprit). The whole
 * line is checked before the map changes, so a bad line adds nothing. */
static const char *parse_line(struct policy_sendermap *m, struct tokens *tv, char *line,
                              const char **tok)
{
	char *p = line;
	*tok = NULL;
	tv->n = 0;
	strip_comment(line);
	for (char *t; (t = next_token(&p));) {
		if (tv->n == tv->cap) {
			tv->cap = tv->cap ? tv->cap * 2 : 8;
			tv->v = xrealloc(tv->v, tv->cap * sizeof(*tv->v));
		}
		tv->v[tv->n++] = t;
	}
	if (tv->n == 0)
		return NULL;
	bool limit = strcmp(tv->v[0], "!limit") == 0;
	size_t first = limit ? 2 : 1;
	if (tv->n < first)
		return "missing account";
	char *acc = tv->v[first - 1];
	*tok = acc;
	const char *why = parse_account(acc);
	if (why)
		return why;
	policy__lower(acc, strlen(acc) + 1, acc, strlen(acc));
	if (limit && strcmp(acc, "*") == 0)
		return "no !limit for '*': listener limits are in the configuration";
	if (tv->n == first)
		return limit ? "missing limit" : "missing target";
	struct policy_account_limits lim = { 0 };
	for (size_t i = first; i < tv->n; i++) {
		char *t = tv->v[i];
		enum kind k;
		const char *s;
		*tok = t;
		if (!limit)
			policy__lower(t, strlen(t) + 1, t, strlen(t));
		why = limit ? parse_limit(&lim, t) : parse_target(t, &k, &s);
		if (why)
			return why;
	}
	struct account *a = get_account(m, acc);
	if (limit) {
		apply_limits(a, &lim);
		return NULL;
	}
	for (size_t i = first; i < tv->n; i++) {
		char *t = tv->v[i];
		enum kind k;
		const char *s;
		parse_target(t, &k, &s);
		if (k == K_PATTERN && t[0] == '@') {
			/* "@*.example.org": the pattern covers the local part too. */
			char *pat = str_printf("*%s", t);
			add_rule(m, a, k, pat);
			free(pat);
		} else {
			add_rule(m, a, k, s);
		}
	}
	return NULL;
}

struct policy_sendermap *policy_sendermap_load(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	struct policy_sendermap *m = xcalloc(1, sizeof(*m));
	m->nbuckets = 1024;
	m->buckets = xcalloc(m->nbuckets, sizeof(*m->buckets));
	char *line = NULL;
	size_t cap = 0;
	unsigned lineno = 0;
	bool ok = true;
	struct tokens tv = { 0 };
	while (getline(&line, &cap, f) >= 0) {
		const char *tok;
		lineno++;
		const char *why = parse_line(m, &tv, line, &tok);
		if (why) {
			char safe[80];
			str_sanitize(safe, sizeof(safe), tok ? tok : "", tok ? strlen(tok) : 0);
			snprintf(err, errlen, "%s:%u: %s%s%s%s", path, lineno, why, tok ? " (\"" : "",
			         safe, tok ? "\")" : "");
			ok = false;
			break;
		}
	}
	if (ok && ferror(f)) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		ok = false;
	}
	free(tv.v);
	free(line);
	fclose(f);
	if (!ok) {
		policy_sendermap_free(m);
		return NULL;
	}
	return m;
}

void policy_sendermap_free(struct policy_sendermap *m)
{
	if (!m)
		return;
	while (m->chunks) {
		struct chunk *next = m->chunks->next;
		free(m->chunks);
		m->chunks = next;
	}
	free(m->buckets);
	free(m);
}
