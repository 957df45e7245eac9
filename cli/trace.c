/*
 * trace.c - `postern trace`: the abuse desk's tool. Finds trace records by
 * any key (queue id, trace id, Message-ID, account, address or CIDR block,
 * certificate, sender, recipient, time), tells whether the trace header of
 * a message someone received is ours and authentic and then who sent it,
 * and prunes old records. Reads the store read-only (never blocks the
 * daemon); prunes in short transactions.
 *
 * Ownership: everything here lives for one command; the record printers
 * print what trace_query_run() lends them during its callback.
 */
#include "cli/cli.h"
#include "common/common.h"
#include "trace/trace.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/crypto.h>

#define MESSAGE_MAX (64u << 20)   /* an abuse report, not a mailbox */

struct options {
	const char *config, *db, *keys, *gate;
	struct trace_query q;
	bool any_filter;
	bool json;
	const char *message;          /* --message FILE or "-" */
	bool prune;
	const char *older_than;
};

struct printer {
	bool json;
	int count;
};

/* ---- one record ----------------------------------------------------------- */

static void text_field(const char *label, const char *value)
{
	if (!value || !*value)
		return;
	printf("  %-12s", label);
	cli_put_text(value);
	putchar('\n');
}

static void text_rcpt(const struct trace_rcpt_status *r)
{
	fputs("<", stdout);
	cli_put_text(r->rcpt);
	printf("> %s", r->status ? r->status : "queued");
	if (r->time) {
		char when[32];
		cli_iso_time(r->time, when);
		printf(" %s", when);
	}
	if (r->relay) {
		fputs(" via ", stdout);
		cli_put_text(r->relay);
	}
	if (r->reply) {
		fputs(": ", stdout);
		cli_put_text(r->reply);
	}
	putchar('\n');
}

static void print_text(const struct trace_match *m)
{
	const struct trace_record *r = &m->rec;
	char when[32];
	cli_iso_time(r->time, when);
	printf("%s  %s  trace %s\n", r->qid, when, r->trace_id);
	printf("  %-12s", "client");
	cli_put_text(r->client_ip ? r->client_ip : "?");
	printf(" port %u", r->client_port);
	if (r->reverse_name) {
		fputs(" (", stdout);
		cli_put_text(r->reverse_name);
		putchar(')');
	}
	if (r->helo) {
		fputs(" helo ", stdout);
		cli_put_text(r->helo);
	}
	putchar('\n');
	text_field("listener", r->listener);
	text_field("session", r->sid);
	printf("  %-12s", "tls");
	cli_put_text(r->tls_version ? r->tls_version : "none");
	if (r->tls_cipher) {
		putchar(' ');
		cli_put_text(r->tls_cipher);
	}
	if (r->tls_sni) {
		fputs(" sni ", stdout);
		cli_put_text(r->tls_sni);
	}
	putchar('\n');
	text_field("certificate", r->cert_fp);
	text_field("  subject", r->cert_subject);
	text_field("  issuer", r->cert_issuer);
	if (r->account) {
		printf("  %-12s", "account");
		cli_put_text(r->account);
		if (r->sasl_mech) {
			fputs(" (", stdout);
			cli_put_text(r->sasl_mech);
			putchar(')');
		}
		putchar('\n');
	}
	printf("  %-12s<", "sender");
	cli_put_text(r->mail_from ? r->mail_from : "");
	fputs(">\n", stdout);
	for (size_t i = 0; i < m->nrcpts; i++) {
		printf("  %-12s", i ? "" : "recipients");
		text_rcpt(&m->rcpts[i]);
	}
	printf("  %-12s%llu bytes\n", "size", (unsigned long long)r->size);
	text_field("sha256", r->body_sha256);
	text_field("message-id", r->message_id);
	text_field("s/mime", r->smime_status);
	text_field("trust", r->trust_class);
}

static void json_str(const char *key, const char *value, bool first)
{
	printf("%s\"%s\":", first ? "" : ",", key);
	cli_put_json(value);
}

static void json_time(const char *key, int64_t t)
{
	char when[32];
	cli_iso_time(t, when);
	printf(",\"%s\":\"%s\"", key, when);
}

static void print_json(const struct trace_match *m)
{
	const struct trace_record *r = &m->rec;
	putchar('{');
	json_str("qid", r->qid, true);
	json_str("trace_id", r->trace_id, false);
	json_time("time", r->time);
	json_str("sid", r->sid, false);
	json_str("listener", r->listener, false);
	json_str("client_ip", r->client_ip, false);
	printf(",\"client_port\":%u", r->client_port);
	json_str("reverse_name", r->reverse_name, false);
	json_str("helo", r->helo, false);
	json_str("tls_version", r->tls_version, false);
	json_str("tls_cipher", r->tls_cipher, false);
	json_str("tls_sni", r->tls_sni, false);
	json_str("cert_fp", r->cert_fp, false);
	json_str("cert_subject", r->cert_subject, false);
	json_str("cert_issuer", r->cert_issuer, false);
	json_str("sasl_mech", r->sasl_mech, false);
	json_str("account", r->account, false);
	json_str("mail_from", r->mail_from, false);
	printf(",\"size\":%llu", (unsigned long long)r->size);
	json_str("body_sha256", r->body_sha256, false);
	json_str("message_id", r->message_id, false);
	json_str("smime_status", r->smime_status, false);
	json_str("trust_class", r->trust_class, false);
	fputs(",\"rcpts\":[", stdout);
	for (size_t i = 0; i < m->nrcpts; i++) {
		const struct trace_rcpt_status *s = &m->rcpts[i];
		putchar(i ? ',' : '{');
		if (i)
			putchar('{');
		json_str("rcpt", s->rcpt, true);
		json_str("status", s->status, false);
		json_str("relay", s->relay, false);
		json_str("reply", s->reply, false);
		if (s->time)
			json_time("time", s->time);
		else
			fputs(",\"time\":null", stdout);
		putchar('}');
	}
	fputs("]}", stdout);
}

static void on_match(const struct trace_match *m, void *arg)
{
	struct printer *p = arg;
	if (p->json) {
		fputs(p->count ? ",\n" : "[", stdout);
		print_json(m);
	} else {
		if (p->count)
			putchar('\n');
		print_text(m);
	}
	p->count++;
}

/* ---- the three jobs --------------------------------------------------------- */

static int do_query(const struct options *o, const struct cli_trace_conf *c)
{
	struct printer p = { .json = o->json };
	char err[512];
	int n = trace_query_run(c->db, &o->q, on_match, &p, err, sizeof(err));
	if (n < 0) {
		fflush(stdout);
		fprintf(stderr, "postern trace: %s\n", err);
		return n == -EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_DB;
	}
	if (o->json)
		fputs(n ? "]\n" : "[]\n", stdout);
	else if (n == 0)
		puts("no matching record");
	else
		printf("\n%d record%s\n", n, n == 1 ? "" : "s");
	return n ? CLI_EXIT_FOUND : CLI_EXIT_NOT_FOUND;
}

static int do_prune(const struct options *o, const struct cli_trace_conf *c)
{
	uint64_t age;
	if (str_parse_duration(o->older_than, &age) < 0 || age == 0) {
		fprintf(stderr, "postern trace: --older-than: not a duration: %s\n", o->older_than);
		return CLI_EXIT_USAGE;
	}
	int64_t before = (int64_t)time(NULL) - (int64_t)age;
	uint64_t messages, rejects;
	char err[512], when[32];
	if (trace_prune(c->db, before, &messages, &rejects, err, sizeof(err)) < 0) {
		fprintf(stderr, "postern trace: %s\n", err);
		return CLI_EXIT_DB;
	}
	cli_iso_time(before, when);
	printf("pruned %llu message%s and %llu refused attempt%s older than %s\n",
	       (unsigned long long)messages, messages == 1 ? "" : "s",
	       (unsigned long long)rejects, rejects == 1 ? "" : "s", when);
	return CLI_EXIT_FOUND;
}

static int read_input(const char *name, struct buf *b)
{
	FILE *f = strcmp(name, "-") == 0 ? stdin : fopen(name, "rb");
	if (!f)
		return -errno;
	char chunk[65536];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && b->len <= MESSAGE_MAX)
		buf_append(b, chunk, n);
	int rc = ferror(f) ? -EIO : b->len > MESSAGE_MAX ? -EFBIG : 0;
	if (f != stdin)
		fclose(f);
	return rc;
}

/* ---- --message: who sent this message? ----------------------------------- */

/* What the lookup of one message found; printed once the verdict is final. */
struct judged {
	const struct options *o;
	const struct trace_found *f;
	const struct trace_key *keys;
	size_t nkeys;
	enum trace_verdict verdict;
	bool recorded_none;       /* the record of a copied header has no Message-ID */
	bool printed;             /* the verdict and its record are out */
};

static void json_verdict_head(const struct trace_found *f, enum trace_verdict v)
{
	fputs("{\"verdict\":", stdout);
	cli_put_json(trace_verdict_name(v));
	if (f->version) {
		json_str("trace_id", f->trace_id, false);
		json_str("key_id", f->key_id, false);
		json_str("gate", f->gate, false);
		json_time("time", f->time);
	}
	json_str("message_id", f->message_id, false);
	json_str("found_in", f->enclosed ? "enclosed" : "message", false);
}

static const char *quoted_where(const struct trace_quoted *q)
{
	return q->renamed ? "renamed" : "enclosed";
}

static void json_quoted(const struct trace_found *f)
{
	fputs(",\"quoted\":[", stdout);
	for (size_t i = 0; i < f->nquoted; i++) {
		const struct trace_quoted *q = &f->quoted[i];
		fputs(i ? ",{" : "{", stdout);
		json_str("where", quoted_where(q), true);
		json_str("verdict", trace_verdict_name(q->verdict), false);
		json_str("trace_id", q->trace_id[0] ? q->trace_id : NULL, false);
		json_str("gate", q->gate[0] ? q->gate : NULL, false);
		putchar('}');
	}
	printf("],\"quoted_more\":%s}\n", f->quoted_more ? "true" : "false");
}

/* Quoted headers in text: what they are, never whose. */
static void text_quoted(const struct trace_found *f)
{
	if (!f->nquoted)
		return;
	puts("\nalso seen, evidence only (not who sent this message):");
	for (size_t i = 0; i < f->nquoted; i++) {
		const struct trace_quoted *q = &f->quoted[i];
		fputs(q->renamed ? "  renamed by this gate on arrival (the sender brought it along"
		                 : "  in an enclosed message (attached or forwarded",
		      stdout);
		fputs(q->renamed && q->enclosed ? ", in an enclosed message): " : "): ", stdout);
		fputs(trace_verdict_name(q->verdict), stdout);
		if (q->trace_id[0])
			printf(", trace id %s", q->trace_id);
		if (q->verdict == TRACE_OTHER_GATE) {
			fputs(", gate ", stdout);
			cli_put_text(q->gate);
		}
		putchar('\n');
	}
	if (f->quoted_more)
		puts("  ... and more");
	puts("  (postern trace --trace-id ID shows the record a trace id stands for)");
}

static void text_verdict(const struct judged *j)
{
	const struct trace_found *f = j->f;
	switch (j->verdict) {
	case TRACE_MISSING:
		puts("no Postern trace header in this message");
		break;
	case TRACE_MALFORMED:
		puts("the trace header is malformed (damaged or forged)");
		break;
	case TRACE_FORGED:
		puts("the trace header is forged or altered (MAC does not verify)");
		break;
	case TRACE_OTHER_GATE:
		fputs("the trace header is from another gate: ", stdout);
		cli_put_text(f->gate);
		putchar('\n');
		break;
	case TRACE_UNKNOWN_KEY:
		fputs("signed with key ", stdout);
		cli_put_text(f->key_id);
		fputs(", which this gate does not have\n", stdout);
		break;
	case TRACE_COPIED:
		/* The record is not shown: it is another message's. */
		printf("the trace header is genuine (trace id %s) but was issued for\n"
		       "another message, so it does not tell who sent this one:\n"
		       "  it was issued for ", f->trace_id);
		fputs(j->recorded_none ? "a message with no Message-ID" : "another Message-ID", stdout);
		fputs(", and this message has ", stdout);
		if (f->message_id[0]) {
			fputs("Message-ID ", stdout);
			cli_put_text(f->message_id);
		} else {
			fputs("no Message-ID", stdout);
		}
		puts(j->recorded_none ? "\n  (added on the way, or the header was copied onto it)"
		                      : "\n  (copied onto it, or its Message-ID was changed)");
		break;
	case TRACE_VALID:
		puts("authentic trace header, but no record of it is in the trace store "
		     "(pruned, or another store?)");
		break;
	}
}

static void print_valid(const struct judged *j, const struct trace_match *m)
{
	const struct trace_found *f = j->f;
	if (j->o->json) {
		json_verdict_head(f, TRACE_VALID);
		fputs(",\"record\":", stdout);
		print_json(m);
		return;
	}
	char when[32];
	cli_iso_time(f->time, when);
	printf("authentic trace header: trace id %s, %s, key ", f->trace_id, when);
	cli_put_text(f->key_id);
	putchar('\n');
	if (f->enclosed)
		puts("found in an enclosed message (an attached or forwarded one): the message "
		     "itself\nshows no trace of this gate; the record is the enclosed message's");
	putchar('\n');
	print_text(m);
}

/* The record of the header's trace id (at most one: trace ids are unique)
 * settles the verdict: the header must have been issued for this very
 * message, its Message-ID the recorded one. */
static void on_judged(const struct trace_match *m, void *arg)
{
	struct judged *j = arg;
	const char *mid = m->rec.message_id ? m->rec.message_id : "";
	j->verdict = trace_header_against_record(j->f, j->keys, j->nkeys, mid);
	j->recorded_none = !mid[0];
	if (j->verdict == TRACE_VALID && !j->printed) {
		print_valid(j, m);
		j->printed = true;
	}
}

static int exit_status(enum trace_verdict v)
{
	switch (v) {
	case TRACE_VALID:
		return CLI_EXIT_FOUND;
	case TRACE_MISSING:
		return CLI_EXIT_NOT_FOUND;
	default:
		return CLI_EXIT_NOT_AUTHENTIC;
	}
}

static int judge_message(const struct options *o, const struct cli_trace_conf *c,
                         const struct trace_key *keys, size_t nkeys, const struct trace_found *f)
{
	struct judged j = { .o = o, .f = f, .keys = keys, .nkeys = nkeys, .verdict = f->verdict };
	bool looked = false;
	/* A forged header may be a genuine one on another message: only its
	 * record can tell (header.c). */
	if (f->verdict == TRACE_VALID || f->verdict == TRACE_FORGED) {
		char err[512];
		struct trace_query q = { .trace_id = f->trace_id };
		int n = trace_query_run(c->db, &q, on_judged, &j, err, sizeof(err));
		if (n < 0) {
			fflush(stdout);
			fprintf(stderr, "postern trace: %s\n", err);
			return CLI_EXIT_DB;
		}
		looked = n > 0;
	}
	int status = exit_status(j.verdict);
	if (j.verdict == TRACE_VALID && !looked)
		status = CLI_EXIT_NOT_FOUND;   /* authentic, but no record */
	if (o->json) {
		if (!j.printed) {
			json_verdict_head(f, j.verdict);
			fputs(",\"record\":null", stdout);
		}
		json_quoted(f);
	} else {
		if (!j.printed)
			text_verdict(&j);
		text_quoted(f);
	}
	return status;
}

static int do_message(const struct options *o, const struct cli_trace_conf *c)
{
	if (!c->key_file || !c->gate) {
		fprintf(stderr, "postern trace: --message needs the trace keys and the gate name: "
		                "give -c CONFIG, or --keys FILE and --gate NAME\n");
		return CLI_EXIT_USAGE;
	}
	char err[512];
	struct trace_key *keys = NULL;
	size_t nkeys = 0;
	if (trace_keys_load(c->key_file, &keys, &nkeys, err, sizeof(err)) < 0) {
		fprintf(stderr, "postern trace: %s\n", err);
		return CLI_EXIT_USAGE;
	}
	struct buf msg;
	buf_init(&msg);
	int rc = read_input(o->message, &msg);
	struct trace_found *f = xmalloc(sizeof(*f));
	if (rc < 0) {
		fprintf(stderr, "postern trace: cannot read %s: %s\n", o->message,
		        rc == -EFBIG ? "larger than 64 MiB" : strerror(-rc));
		rc = CLI_EXIT_USAGE;
	} else if (trace_header_find(msg.data ? msg.data : "", msg.len, c->gate, keys, nkeys,
	                             f) < 0) {
		fprintf(stderr, "postern trace: %s does not look like a message\n", o->message);
		rc = CLI_EXIT_USAGE;
	} else {
		rc = judge_message(o, c, keys, nkeys, f);
	}
	free(f);
	buf_free(&msg);
	OPENSSL_cleanse(keys, nkeys * sizeof(*keys));
	free(keys);
	return rc;
}

/* ---- the command line ------------------------------------------------------ */

static void usage(FILE *out)
{
	fputs("usage: postern trace [-c CONFIG | --db FILE] FILTER... [--limit N] [--json]\n"
	      "       postern trace [-c CONFIG | --db FILE --keys FILE --gate NAME]\n"
	      "                     --message FILE|- [--json]\n"
	      "       postern trace [-c CONFIG | --db FILE] --prune --older-than DURATION\n"
	      "\n"
	      "  -c, --config FILE     read the store, key file and gate name (hostname)\n"
	      "                        from FILE (default: " CLI_CONFIG_FILE ")\n"
	      "      --db FILE         the trace store (overrides the configuration)\n"
	      "      --keys FILE       the trace key file, --gate NAME the gate's name\n"
	      "filters, combined (all must match); newest records first:\n"
	      "      --qid QID  --trace-id ID  --message-id ID (with or without <>)\n"
	      "      --account NAME  --sender ADDRESS  --rcpt ADDRESS (no case)\n"
	      "      --ip ADDRESS|CIDR (IPv4 or IPv6, e.g. 192.0.2.0/24, 2001:db8::/32)\n"
	      "      --cert FINGERPRINT (SHA-256 hex, with or without colons)\n"
	      "      --since TIME  --until TIME  --limit N\n"
	      "      TIME: 2024-05-01, 2024-05-01T12:00[:SS][Z|+HH:MM] (UTC when no zone),\n"
	      "            @UNIXTIME, or a time ago: 90m, 2h, 7d\n"
	      "      --message FILE    check the trace header of a message (or an ARF\n"
	      "                        report) and show the record it points to; - for stdin\n"
	      "      --prune --older-than DURATION   delete records older than that (30d)\n"
	      "      --json            JSON instead of text\n"
	      "exit status: 0 found (or pruned); 1 no matching record, or no trace header,\n"
	      "  or an authentic header without a record; 2 invalid input or usage (bad\n"
	      "  option, unreadable file, not a message); 3 the trace header does not\n"
	      "  show who sent this message (forged, altered, copied from another\n"
	      "  message, unknown key, another gate); 4 database (or output) error\n",
	      out);
}

enum {
	OPT_DB = 256, OPT_KEYS, OPT_GATE, OPT_QID, OPT_TRACE_ID, OPT_MESSAGE_ID, OPT_ACCOUNT,
	OPT_IP, OPT_CERT, OPT_SENDER, OPT_RCPT, OPT_SINCE, OPT_UNTIL, OPT_LIMIT, OPT_JSON,
	OPT_MESSAGE, OPT_PRUNE, OPT_OLDER_THAN,
};

static int parse_limit(const char *s, unsigned *out)
{
	unsigned long v;
	if (cli_parse_count(s, 1000000000ul, &v) < 0)
		return -1;
	*out = (unsigned)v;
	return 0;
}

/* Returns -1 to go on, or the exit status. */
static int parse_args(int argc, char **argv, struct options *o)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "db", required_argument, NULL, OPT_DB },
		{ "keys", required_argument, NULL, OPT_KEYS },
		{ "gate", required_argument, NULL, OPT_GATE },
		{ "qid", required_argument, NULL, OPT_QID },
		{ "trace-id", required_argument, NULL, OPT_TRACE_ID },
		{ "message-id", required_argument, NULL, OPT_MESSAGE_ID },
		{ "account", required_argument, NULL, OPT_ACCOUNT },
		{ "ip", required_argument, NULL, OPT_IP },
		{ "cert", required_argument, NULL, OPT_CERT },
		{ "sender", required_argument, NULL, OPT_SENDER },
		{ "rcpt", required_argument, NULL, OPT_RCPT },
		{ "since", required_argument, NULL, OPT_SINCE },
		{ "until", required_argument, NULL, OPT_UNTIL },
		{ "limit", required_argument, NULL, OPT_LIMIT },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "message", required_argument, NULL, OPT_MESSAGE },
		{ "prune", no_argument, NULL, OPT_PRUNE },
		{ "older-than", required_argument, NULL, OPT_OLDER_THAN },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static char name[] = "postern trace";   /* for getopt's messages */
	int64_t now = (int64_t)time(NULL);
	int c;
	argv[0] = name;
	optind = 1;
	while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		const char *bad = NULL;
		o->any_filter |= c >= OPT_QID && c <= OPT_UNTIL;
		switch (c) {
		case 'c': o->config = optarg; break;
		case OPT_DB: o->db = optarg; break;
		case OPT_KEYS: o->keys = optarg; break;
		case OPT_GATE: o->gate = optarg; break;
		case OPT_QID: o->q.qid = optarg; break;
		case OPT_TRACE_ID: o->q.trace_id = optarg; break;
		case OPT_MESSAGE_ID: o->q.message_id = optarg; break;
		case OPT_ACCOUNT: o->q.account = optarg; break;
		case OPT_IP: o->q.client_ip = optarg; break;
		case OPT_CERT: o->q.cert_fp = optarg; break;
		case OPT_SENDER: o->q.mail_from = optarg; break;
		case OPT_RCPT: o->q.rcpt = optarg; break;
		case OPT_SINCE:
			if (cli_parse_time(optarg, now, &o->q.since) < 0)
				bad = "--since";
			break;
		case OPT_UNTIL:
			if (cli_parse_time(optarg, now, &o->q.until) < 0)
				bad = "--until";
			break;
		case OPT_LIMIT:
			if (parse_limit(optarg, &o->q.limit) < 0)
				bad = "--limit";
			break;
		case OPT_JSON: o->json = true; break;
		case OPT_MESSAGE: o->message = optarg; break;
		case OPT_PRUNE: o->prune = true; break;
		case OPT_OLDER_THAN: o->older_than = optarg; break;
		case 'h':
			usage(stdout);
			return CLI_EXIT_FOUND;
		default:
			usage(stderr);
			return CLI_EXIT_USAGE;
		}
		if (bad) {
			fprintf(stderr, "postern trace: %s: cannot read \"%s\"\n", bad, optarg);
			return CLI_EXIT_USAGE;
		}
	}
	const char *why = NULL;
	if (optind != argc)
		why = "unexpected arguments";
	else if (o->prune && (!o->older_than || o->any_filter || o->message || o->q.limit))
		why = "--prune takes --older-than DURATION and nothing else";
	else if (!o->prune && o->older_than)
		why = "--older-than goes with --prune";
	else if (o->message && (o->any_filter || o->q.limit))
		why = "--message takes no filters";
	else if (!o->prune && !o->message && !o->any_filter && !o->q.limit)
		why = "give a filter, or --limit N to list the newest records";
	if (why) {
		fprintf(stderr, "postern trace: %s (see postern trace --help)\n", why);
		return CLI_EXIT_USAGE;
	}
	return -1;
}

int cli_trace(int argc, char **argv)
{
	struct options o = { 0 };
	int rc = parse_args(argc, argv, &o);
	if (rc >= 0)
		return rc;
	struct cli_trace_conf c;
	char err[512];
	if (cli_trace_conf_get(o.config, o.db, o.keys, o.gate, &c, err, sizeof(err)) < 0) {
		fprintf(stderr, "postern trace: %s\n", err);
		return CLI_EXIT_USAGE;
	}
	if (o.prune)
		rc = do_prune(&o, &c);
	else if (o.message)
		rc = do_message(&o, &c);
	else
		rc = do_query(&o, &c);
	cli_trace_conf_free(&c);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "postern trace: cannot write the output\n");
		rc = CLI_EXIT_DB;
	}
	return rc;
}
