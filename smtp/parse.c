/*
 * smtp_parse.c - the command side of the SMTP wire: the line reader that
 * cuts the input into CRLF-terminated lines, the command parser (RFC 5321
 * 4.1.1 and 4.1.2, with the parameters of SIZE, 8BITMIME/BINARYMIME,
 * SMTPUTF8, AUTH, DSN and CHUNKING) and the mailbox syntax check.
 *
 * Ownership: the reader owns its buffer (smtp_reader_free); a line it
 * returns lives in that buffer until the next smtp_reader_* call. The
 * buffer holds AUTH lines too, so it never leaves a byte behind when it
 * grows, moves or is freed.
 * smtp_parse allocates nothing: it cuts the caller's line in place and every
 * pointer in struct smtp_cmd points into that line.
 *
 * Strictness: only CRLF ends a line (SMTP smuggling and command injection
 * use the others), control characters and NULs are syntax errors, and
 * paths are checked against the RFC 5321 grammar. Leniency is limited to
 * what real clients send: spaces around arguments, "FROM: <a@b>", verbs
 * and keywords in any case.
 */
#include "smtp/parse.h"

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

/* ---- line reader ---------------------------------------------------- */

void smtp_reader_init(struct smtp_reader *r, size_t max_line)
{
	buf_init(&r->in);
	r->off = 0;
	/* An empty line (CRLF) must still fit. */
	r->max_line = max_line < 2 ? 2 : max_line;
	r->discarding = false;
	r->discard_cr = false;
}

void smtp_reader_free(struct smtp_reader *r)
{
	buf_free_wiped(&r->in);
	r->off = 0;
}

static void reader_compact(struct smtp_reader *r)
{
	if (r->off) {
		buf_consume_wiped(&r->in, r->off);
		r->off = 0;
	}
	if (r->in.len == 0)
		buf_free_wiped(&r->in);
}

/*
 * Input is only appended here; limits are applied as lines are taken, so
 * that bytes after a command (a BDAT chunk, DATA content) arrive intact.
 * The session takes lines as soon as it pushes, so the buffer never holds
 * more than one read plus an unfinished line.
 */
void smtp_reader_push(struct smtp_reader *r, const void *data, size_t len)
{
	reader_compact(r);
	buf_append_wiped(&r->in, data, len);
}

/* Drops the rest of an overlong line, up to and including its CRLF (a bare
 * LF inside it does not end it). Returns false when more input is needed. */
static bool reader_skip(struct smtp_reader *r)
{
	size_t avail = r->in.len - r->off;
	/* Nothing buffered: in.data may be NULL, and NULL + 0 is undefined. */
	if (avail == 0)
		return false;
	const char *p = r->in.data + r->off;
	const char *end = p + avail;
	const char *q = p;
	if (r->discard_cr && *p == '\n') {
		r->off += 1;
	} else {
		for (;;) {
			const char *lf = memchr(q, '\n', (size_t)(end - q));
			if (!lf) {
				r->discard_cr = end[-1] == '\r';
				r->off += avail;
				return false;
			}
			if (lf > p && lf[-1] == '\r') {
				r->off += (size_t)(lf - p) + 1;
				break;
			}
			q = lf + 1;
		}
	}
	r->discarding = false;
	r->discard_cr = false;
	return true;
}

int smtp_reader_next(struct smtp_reader *r, char **line, size_t *len)
{
	*line = NULL;
	*len = 0;
	if (r->discarding && !reader_skip(r)) {
		reader_compact(r);
		return SMTP_LINE_NONE;
	}
	size_t avail = r->in.len - r->off;
	if (avail == 0) {
		buf_free_wiped(&r->in);
		r->off = 0;
		return SMTP_LINE_NONE;
	}
	char *p = r->in.data + r->off;
	char *lf = memchr(p, '\n', avail);
	if (!lf) {
		if (avail < r->max_line)
			return SMTP_LINE_NONE;
		/* The head of an overlong line: the rest is dropped as it comes.
		 * Reporting it now lets the session answer without waiting. */
		r->discard_cr = p[avail - 1] == '\r';
		r->off += avail;
		r->discarding = true;
		reader_compact(r);
		return SMTP_LINE_TOO_LONG;
	}
	size_t n = (size_t)(lf - p) + 1;
	r->off += n;
	if (n > r->max_line)
		return SMTP_LINE_TOO_LONG;
	if (n < 2 || p[n - 2] != '\r' || memchr(p, '\r', n - 2))
		return SMTP_LINE_BARE_LF;
	p[n - 2] = '\0';
	*line = p;
	*len = n - 2;
	return SMTP_LINE_OK;
}

size_t smtp_reader_pending(const struct smtp_reader *r)
{
	return r->in.len - r->off;
}

const char *smtp_reader_peek(const struct smtp_reader *r, size_t *len)
{
	*len = r->in.len - r->off;
	return r->in.data ? r->in.data + r->off : "";
}

void smtp_reader_skip(struct smtp_reader *r, size_t n)
{
	r->off += n;
	if (r->off >= r->in.len)
		reader_compact(r);
}

void smtp_reader_discard(struct smtp_reader *r)
{
	buf_free_wiped(&r->in);
	r->off = 0;
	r->discarding = false;
	r->discard_cr = false;
}

/* ---- character classes ------------------------------------------------ */

static bool is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool is_alnum(unsigned char c)
{
	return is_alpha(c) || is_digit(c);
}

static bool has_non_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return true;
	return false;
}

/* No control characters (NUL included) anywhere in the line. */
static bool printable(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f)
			return false;
	}
	return true;
}

/* ---- mailbox syntax (RFC 5321 4.1.2, RFC 6531 3.3) --------------------- */

/* Length of one atext character (a UTF-8 sequence counts as one). */
static size_t atext_len(const char *s, bool utf8)
{
	unsigned char c = (unsigned char)*s;

	if (c == '\0')
		return 0;
	if (is_alnum(c) || strchr("!#$%&'*+-/=?^_`{|}~", c))
		return 1;
	return utf8 && c >= 0x80 ? codec_utf8_len(s) : 0;
}

/* Dot-string = Atom *("." Atom); returns its end or NULL. */
static const char *scan_dot_string(const char *s, bool utf8)
{
	for (;;) {
		const char *atom = s;
		size_t n;
		while ((n = atext_len(s, utf8)) > 0)
			s += n;
		if (s == atom)
			return NULL;
		if (*s != '.')
			return s;
		s++;
	}
}

/* Quoted-string with qtextSMTP and quoted-pairSMTP; returns its end or NULL. */
static const char *scan_quoted(const char *s, bool utf8)
{
	s++;
	while (*s != '"') {
		unsigned char c = (unsigned char)*s;
		size_t n;
		if (c == '\\') {
			unsigned char e = (unsigned char)s[1];
			if (e < 32 || e > 126)
				return NULL;
			s += 2;
		} else if (c >= 32 && c <= 126) {
			s++;
		} else if (utf8 && c >= 0x80 && (n = codec_utf8_len(s)) > 0) {
			s += n;
		} else {
			return NULL;
		}
	}
	return s + 1;
}

/* One sub-domain: Let-dig [Ldh-str], or a U-label with utf8. */
static size_t label_len(const char *s, bool utf8)
{
	const char *p = s;
	bool ascii = true;
	char last = '\0';

	for (;;) {
		unsigned char c = (unsigned char)*p;
		size_t n;
		if (is_alnum(c) || (c == '-' && p > s)) {
			p++;
		} else if (utf8 && c >= 0x80 && (n = codec_utf8_len(p)) > 0) {
			p += n;
			ascii = false;
		} else {
			break;
		}
		last = (char)c;
	}
	if (p == s || last == '-')
		return 0;
	/* 63 is the DNS limit; a U-label's limit applies to its A-label,
	 * which we do not compute. */
	if (ascii && p - s > 63)
		return 0;
	return (size_t)(p - s);
}

static bool valid_domain(const char *s, bool utf8)
{
	size_t total = strlen(s);

	if (total == 0 || total > 255)
		return false;
	for (;;) {
		size_t n = label_len(s, utf8);
		if (n == 0)
			return false;
		s += n;
		if (*s == '\0')
			return true;
		if (*s != '.')
			return false;
		s++;
	}
}

/* [1.2.3.4] or [IPv6:...]; general address literals have no registered
 * tag in use, so they are refused. */
static bool valid_literal(const char *s)
{
	const char *end = strchr(s, ']');
	char tmp[64];
	unsigned char addr[16];

	if (!end || end[1] != '\0')
		return false;
	size_t n = (size_t)(end - s) - 1;
	if (n == 0 || n >= sizeof(tmp))
		return false;
	memcpy(tmp, s + 1, n);
	tmp[n] = '\0';
	if (strncasecmp(tmp, "IPv6:", 5) == 0)
		return inet_pton(AF_INET6, tmp + 5, addr) == 1;
	return inet_pton(AF_INET, tmp, addr) == 1;
}

bool smtp_valid_mailbox(const char *path, bool utf8)
{
	/* 256 octets for the whole path, angle brackets included. */
	if (strlen(path) > 254)
		return false;
	const char *at = *path == '"' ? scan_quoted(path, utf8) : scan_dot_string(path, utf8);
	if (!at || *at != '@' || at - path > 64)
		return false;
	const char *domain = at + 1;
	if (*domain == '[')
		return valid_literal(domain);
	return valid_domain(domain, utf8);
}

/* ---- ESMTP parameters ------------------------------------------------- */

/* Parses 1*DIGIT into a uint64_t, refusing overflow. */
static bool parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (*s == '\0')
		return false;
	for (; *s; s++) {
		if (!is_digit((unsigned char)*s))
			return false;
		unsigned d = (unsigned)(*s - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

/* xtext (RFC 3461 4): printable ASCII but "+" and "=", or "+" and two
 * upper-case hex digits. */
static bool valid_xtext(const char *s, size_t max)
{
	const char *start = s;

	if (*s == '\0')
		return false;
	while (*s) {
		unsigned char c = (unsigned char)*s;
		if (c == '+') {
			for (int i = 1; i <= 2; i++)
				if (!strchr("0123456789ABCDEF", s[i]) || s[i] == '\0')
					return false;
			s += 3;
		} else if (c >= 33 && c <= 126 && c != '=') {
			s++;
		} else {
			return false;
		}
	}
	return (size_t)(s - start) <= max;
}

static int set_size(char *value, struct smtp_cmd *cmd)
{
	if (!value || !parse_u64(value, &cmd->size))
		return SMTP_PARSE_SYNTAX;
	cmd->has_size = true;
	return SMTP_PARSE_OK;
}

static int set_body(char *value, struct smtp_cmd *cmd)
{
	if (!value)
		return SMTP_PARSE_SYNTAX;
	if (strcasecmp(value, "7BIT") == 0)
		cmd->body = SMTP_BODY_7BIT;
	else if (strcasecmp(value, "8BITMIME") == 0)
		cmd->body = SMTP_BODY_8BITMIME;
	else if (strcasecmp(value, "BINARYMIME") == 0)
		cmd->body = SMTP_BODY_BINARYMIME;
	else
		return SMTP_PARSE_SYNTAX;
	return SMTP_PARSE_OK;
}

static int set_smtputf8(char *value, struct smtp_cmd *cmd)
{
	if (value)
		return SMTP_PARSE_SYNTAX;
	cmd->smtputf8 = true;
	return SMTP_PARSE_OK;
}

static int set_auth(char *value, struct smtp_cmd *cmd)
{
	/* RFC 4954 5: an xtext mailbox or "<>" (itself valid xtext). */
	if (!value || !valid_xtext(value, 500))
		return SMTP_PARSE_SYNTAX;
	cmd->auth_param = value;
	return SMTP_PARSE_OK;
}

static int set_ret(char *value, struct smtp_cmd *cmd)
{
	if (!value || (strcasecmp(value, "FULL") != 0 && strcasecmp(value, "HDRS") != 0))
		return SMTP_PARSE_SYNTAX;
	cmd->ret = value;
	return SMTP_PARSE_OK;
}

static int set_envid(char *value, struct smtp_cmd *cmd)
{
	/* RFC 3461 4.4: at most 100 characters. */
	if (!value || !valid_xtext(value, 100))
		return SMTP_PARSE_SYNTAX;
	cmd->envid = value;
	return SMTP_PARSE_OK;
}

/* NEVER, or a list of SUCCESS, FAILURE, DELAY, each at most once. */
static int set_notify(char *value, struct smtp_cmd *cmd)
{
	static const char *const words[] = { "NEVER", "SUCCESS", "FAILURE", "DELAY" };
	unsigned seen = 0;
	const char *s = value;

	if (!value)
		return SMTP_PARSE_SYNTAX;
	for (;;) {
		size_t n = strcspn(s, ",");
		size_t i;
		for (i = 0; i < ARRAY_LEN(words); i++)
			if (strlen(words[i]) == n && strncasecmp(s, words[i], n) == 0)
				break;
		if (i == ARRAY_LEN(words) || (seen & (1u << i)))
			return SMTP_PARSE_SYNTAX;
		seen |= 1u << i;
		if (s[n] == '\0')
			break;
		s += n + 1;
	}
	if ((seen & 1u) && seen != 1u)
		return SMTP_PARSE_SYNTAX;
	cmd->notify = value;
	return SMTP_PARSE_OK;
}

/* addr-type ";" xtext (RFC 3461 4.2); utf-8 addresses (RFC 6533) may also
 * carry raw UTF-8. */
static int set_orcpt(char *value, struct smtp_cmd *cmd)
{
	if (!value || strlen(value) > 500)
		return SMTP_PARSE_SYNTAX;
	char *semi = strchr(value, ';');
	if (!semi || semi == value)
		return SMTP_PARSE_SYNTAX;
	for (const char *t = value; t < semi; t++)
		if (!is_alnum((unsigned char)*t) && *t != '-')
			return SMTP_PARSE_SYNTAX;
	const char *addr = semi + 1;
	bool utf8_type = semi - value == 5 && strncasecmp(value, "utf-8", 5) == 0;
	bool ok = utf8_type && has_non_ascii(addr) ? *addr != '\0' : valid_xtext(addr, 500);
	if (!ok)
		return SMTP_PARSE_SYNTAX;
	cmd->orcpt = value;
	return SMTP_PARSE_OK;
}

#define ON_MAIL (1u << SMTP_VERB_MAIL)
#define ON_RCPT (1u << SMTP_VERB_RCPT)

static const struct param_def {
	const char *name;
	unsigned verbs;
	int (*set)(char *value, struct smtp_cmd *cmd); /* value NULL without "=" */
} params[] = {
	{ "SIZE", ON_MAIL, set_size },
	{ "BODY", ON_MAIL, set_body },
	{ "SMTPUTF8", ON_MAIL, set_smtputf8 },
	{ "AUTH", ON_MAIL, set_auth },
	{ "RET", ON_MAIL, set_ret },
	{ "ENVID", ON_MAIL, set_envid },
	{ "NOTIFY", ON_RCPT, set_notify },
	{ "ORCPT", ON_RCPT, set_orcpt },
};

/* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
static bool valid_keyword(const char *s)
{
	if (!is_alnum((unsigned char)*s))
		return false;
	for (s++; *s; s++)
		if (!is_alnum((unsigned char)*s) && *s != '-')
			return false;
	return true;
}

/* esmtp-value = 1*(%d33-60 / %d62-126), plus UTF-8 per RFC 6531. */
static bool valid_value(const char *s)
{
	return *s != '\0' && strchr(s, '=') == NULL && codec_utf8_valid(s);
}

static int parse_param(char *kw, struct smtp_cmd *cmd, unsigned *seen)
{
	char *value = strchr(kw, '=');

	if (value)
		*value++ = '\0';
	if (!valid_keyword(kw) || (value && !valid_value(value)))
		return SMTP_PARSE_SYNTAX;
	for (size_t i = 0; i < ARRAY_LEN(params); i++) {
		if (!(params[i].verbs & (1u << cmd->verb)) || strcasecmp(kw, params[i].name) != 0)
			continue;
		if (*seen & (1u << i))
			return SMTP_PARSE_SYNTAX;
		*seen |= 1u << i;
		return params[i].set(value, cmd);
	}
	return SMTP_PARSE_UNKNOWN_PARAM;
}

/* Cuts the next space-separated word out of *p; "" at the end. */
static char *next_word(char **p)
{
	char *w = *p;
	char *e = w + strcspn(w, " ");

	if (*e) {
		*e++ = '\0';
		while (*e == ' ')
			e++;
	}
	*p = e;
	return w;
}

static int parse_params(char *p, struct smtp_cmd *cmd)
{
	unsigned seen = 0;

	while (*p) {
		int rc = parse_param(next_word(&p), cmd, &seen);
		if (rc)
			return rc;
	}
	return SMTP_PARSE_OK;
}

/* ---- MAIL and RCPT ---------------------------------------------------- */

/* Cuts "<path>" at p: *path gets the inside, *rest what follows. A ">"
 * inside a quoted local part does not end the path. */
static int cut_path(char *p, char **path, char **rest)
{
	bool quoted = false;
	char *q;

	if (*p != '<')
		return SMTP_PARSE_BAD_PATH;
	for (q = p + 1; *q && (quoted || *q != '>'); q++) {
		if (quoted && *q == '\\' && q[1])
			q++;
		else if (*q == '"')
			quoted = !quoted;
	}
	if (*q != '>' || q - p + 1 > 256)
		return SMTP_PARSE_BAD_PATH;
	if (q[1] != '\0' && q[1] != ' ')
		return SMTP_PARSE_BAD_PATH;
	*q++ = '\0';
	while (*q == ' ')
		q++;
	*path = p + 1;
	*rest = q;
	return SMTP_PARSE_OK;
}

/* Drops an A-d-l source route ("@a,@b:"); RFC 5321 4.1.2 and appendix C
 * say to accept and ignore it. */
static bool strip_route(char **path)
{
	char *p = *path;

	if (*p != '@')
		return true;
	char *colon = strchr(p, ':');
	if (!colon)
		return false;
	*colon = '\0';
	while (p) {
		char *comma = strchr(p, ',');
		if (comma)
			*comma = '\0';
		if (*p != '@' || !valid_domain(p + 1, false))
			return false;
		p = comma ? comma + 1 : NULL;
	}
	*path = colon + 1;
	return **path != '\0';
}

static int check_path(struct smtp_cmd *cmd)
{
	bool mail = cmd->verb == SMTP_VERB_MAIL;

	if (*cmd->path == '\0')
		return mail ? SMTP_PARSE_OK : SMTP_PARSE_BAD_PATH;
	/* RFC 5321 4.1.1.3: "<Postmaster>" without a domain, not routed. */
	if (!mail && strcasecmp(cmd->path, "postmaster") == 0)
		return SMTP_PARSE_OK;
	if (!strip_route(&cmd->path))
		return SMTP_PARSE_BAD_PATH;
	cmd->non_ascii = has_non_ascii(cmd->path);
	if (mail && cmd->non_ascii && !cmd->smtputf8)
		return SMTP_PARSE_NON_ASCII;
	/* RCPT cannot know the transaction's SMTPUTF8; non_ascii tells. */
	return smtp_valid_mailbox(cmd->path, !mail || cmd->smtputf8) ? SMTP_PARSE_OK
	                                                              : SMTP_PARSE_BAD_PATH;
}

static int parse_path_cmd(char *arg, const char *keyword, struct smtp_cmd *cmd)
{
	size_t n = strlen(keyword);
	char *rest;

	if (strncasecmp(arg, keyword, n) != 0)
		return SMTP_PARSE_SYNTAX;
	arg += n;
	while (*arg == ' ')
		arg++;
	int rc = cut_path(arg, &cmd->path, &rest);
	if (rc)
		return rc;
	/* SMTPUTF8 among the parameters decides what the path may hold. */
	rc = parse_params(rest, cmd);
	if (rc)
		return rc;
	return check_path(cmd);
}

/* ---- verbs ------------------------------------------------------------ */

static int parse_mail(char *arg, struct smtp_cmd *cmd)
{
	return parse_path_cmd(arg, "FROM:", cmd);
}

static int parse_rcpt(char *arg, struct smtp_cmd *cmd)
{
	return parse_path_cmd(arg, "TO:", cmd);
}

static int parse_none(char *arg, struct smtp_cmd *cmd)
{
	return *arg ? SMTP_PARSE_SYNTAX : SMTP_PARSE_OK;
}

static int parse_opt_text(char *arg, struct smtp_cmd *cmd)
{
	return codec_utf8_valid(arg) ? SMTP_PARSE_OK : SMTP_PARSE_SYNTAX;
}

static int parse_text(char *arg, struct smtp_cmd *cmd)
{
	return *arg && codec_utf8_valid(arg) ? SMTP_PARSE_OK : SMTP_PARSE_SYNTAX;
}

/* One word; whether it is a good host name is policy, not syntax (real
 * clients send "EHLO DESKTOP_42"). */
static int parse_helo(char *arg, struct smtp_cmd *cmd)
{
	if (!*arg || strchr(arg, ' ') || !codec_utf8_valid(arg))
		return SMTP_PARSE_SYNTAX;
	cmd->domain = arg;
	return SMTP_PARSE_OK;
}

/* BDAT chunk-size [SP "LAST"] (RFC 3030 2). */
static int parse_bdat(char *arg, struct smtp_cmd *cmd)
{
	char *size = next_word(&arg);
	char *last = next_word(&arg);

	if (*arg || !parse_u64(size, &cmd->chunk_size))
		return SMTP_PARSE_SYNTAX;
	if (*last && strcasecmp(last, "LAST") != 0)
		return SMTP_PARSE_SYNTAX;
	cmd->last = *last != '\0';
	return SMTP_PARSE_OK;
}

/* sasl-mech = 1*20(ALPHA / DIGIT / "-" / "_"); lower case is tolerated. */
static bool valid_mech(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 20)
		return false;
	for (; *s; s++)
		if (!is_alnum((unsigned char)*s) && *s != '-' && *s != '_')
			return false;
	return true;
}

/* "=" (empty) or base64 with its padding (RFC 4954 4). */
static bool valid_base64(const char *s)
{
	size_t n = strlen(s), pad = 0;

	if (strcmp(s, "=") == 0)
		return true;
	if (n == 0 || n % 4 != 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '=')
			pad++;
		else if (pad || !(is_alnum(c) || c == '+' || c == '/'))
			return false;
	}
	return pad <= 2;
}

static int parse_auth(char *arg, struct smtp_cmd *cmd)
{
	char *mech = next_word(&arg);
	char *initial = next_word(&arg);

	if (*arg || !valid_mech(mech))
		return SMTP_PARSE_SYNTAX;
	if (*initial && !valid_base64(initial))
		return SMTP_PARSE_SYNTAX;
	cmd->mech = mech;
	cmd->initial = *initial ? initial : NULL;
	return SMTP_PARSE_OK;
}

static const struct verb_def {
	const char *name;
	int (*parse)(char *arg, struct smtp_cmd *cmd);
} verbs[SMTP_VERB_COUNT] = {
	[SMTP_VERB_UNKNOWN] = { "UNKNOWN", NULL },
	[SMTP_VERB_HELO] = { "HELO", parse_helo },
	[SMTP_VERB_EHLO] = { "EHLO", parse_helo },
	[SMTP_VERB_MAIL] = { "MAIL", parse_mail },
	[SMTP_VERB_RCPT] = { "RCPT", parse_rcpt },
	[SMTP_VERB_DATA] = { "DATA", parse_none },
	[SMTP_VERB_BDAT] = { "BDAT", parse_bdat },
	[SMTP_VERB_RSET] = { "RSET", parse_none },
	[SMTP_VERB_NOOP] = { "NOOP", parse_opt_text },
	[SMTP_VERB_QUIT] = { "QUIT", parse_none },
	[SMTP_VERB_VRFY] = { "VRFY", parse_text },
	[SMTP_VERB_EXPN] = { "EXPN", parse_text },
	[SMTP_VERB_HELP] = { "HELP", parse_opt_text },
	[SMTP_VERB_STARTTLS] = { "STARTTLS", parse_none },
	[SMTP_VERB_AUTH] = { "AUTH", parse_auth },
};

const char *smtp_verb_name(enum smtp_verb verb)
{
	if ((unsigned)verb >= SMTP_VERB_COUNT)
		verb = SMTP_VERB_UNKNOWN;
	return verbs[verb].name;
}

static enum smtp_verb find_verb(const char *s, size_t n)
{
	for (int v = SMTP_VERB_UNKNOWN + 1; v < SMTP_VERB_COUNT; v++)
		if (strlen(verbs[v].name) == n && strncasecmp(s, verbs[v].name, n) == 0)
			return (enum smtp_verb)v;
	return SMTP_VERB_UNKNOWN;
}

int smtp_parse(char *line, size_t len, struct smtp_cmd *cmd)
{
	memset(cmd, 0, sizeof(*cmd));
	cmd->arg = line + len;
	while (len > 0 && line[len - 1] == ' ')
		line[--len] = '\0';

	size_t n = 0;
	while (n < len && line[n] != ' ')
		n++;
	cmd->verb = find_verb(line, n);
	if (cmd->verb == SMTP_VERB_UNKNOWN)
		return SMTP_PARSE_UNKNOWN_VERB;
	if (!printable(line, len))
		return SMTP_PARSE_SYNTAX;

	char *arg = line + n;
	if (*arg)
		*arg++ = '\0';
	while (*arg == ' ')
		arg++;
	cmd->arg = arg;
	return verbs[cmd->verb].parse(arg, cmd);
}
