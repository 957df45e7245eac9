/*
 * conf.c - reads the configuration with libconfuse and fills struct conf.
 *
 * Values are checked while the file is parsed (validation callbacks), so
 * every error carries the file and line where it was found. Relative paths
 * are taken relative to the configuration file's directory.
 * Ownership: conf_load() returns a struct conf owned by the caller, freed
 * with conf_free().
 */
#include "conf/conf.h"
#include "common/common.h"

#include <confuse.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#ifndef LOCALSTATEDIR
#define LOCALSTATEDIR "/var"
#endif
#define LOCALSTATEDIR_SPOOL LOCALSTATEDIR "/spool/postern"
#define LOCALSTATEDIR_MAILDIR LOCALSTATEDIR "/mail/postern"

struct conf_errctx {
	char *err;
	size_t errlen;
	bool failed;
	cfg_t *top;  /* sections have no file name of their own */
	const char *dir; /* the file's directory, for relative paths */
	int tls_line;
	bool check_files;
};

/* libconfuse has no user pointer on cfg_t error callbacks; loads are rare
 * and single-threaded (start-up, SIGHUP), so a static is enough. */
static struct conf_errctx *conf_err_target;

static void conf_errfunc(cfg_t *cfg, const char *fmt, va_list ap)
{
	struct conf_errctx *ec = conf_err_target;
	if (!ec || ec->failed)
		return; /* keep the first error: later ones tend to be consequences */
	char msg[512];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	/* Sections know their current line but not the file name. */
	const char *file = cfg && cfg->filename ? cfg->filename : ec->top ? ec->top->filename : NULL;
	int line = cfg && cfg->line > 0 ? cfg->line : ec->top ? ec->top->line : 0;
	if (file && line > 0)
		snprintf(ec->err, ec->errlen, "%s:%d: %s", file, line, msg);
	else if (file)
		snprintf(ec->err, ec->errlen, "%s: %s", file, msg);
	else
		snprintf(ec->err, ec->errlen, "%s", msg);
	ec->failed = true;
}

static char *conf_path(const char *dir, const char *value);

/* ---- validation (runs during parsing, so errors have line numbers) ---- */

static int valid_size(cfg_t *cfg, cfg_opt_t *opt)
{
	uint64_t v;
	const char *s = cfg_opt_getnstr(opt, cfg_opt_size(opt) - 1);
	if (str_parse_size(s, &v) < 0) {
		cfg_error(cfg, "%s: '%s' is not a size (like 512, 64k, 50M)", opt->name, s);
		return -1;
	}
	return 0;
}

static int valid_duration(cfg_t *cfg, cfg_opt_t *opt)
{
	uint64_t v;
	const char *s = cfg_opt_getnstr(opt, cfg_opt_size(opt) - 1);
	if (str_parse_duration(s, &v) < 0 || v > UINT_MAX / 1000) {
		cfg_error(cfg, "%s: '%s' is not a duration (like 30s, 5m, 2h, 5d)", opt->name, s);
		return -1;
	}
	return 0;
}

static int valid_positive(cfg_t *cfg, cfg_opt_t *opt)
{
	long v = cfg_opt_getnint(opt, cfg_opt_size(opt) - 1);
	if (v <= 0 || v > INT_MAX) {
		cfg_error(cfg, "%s: must be a positive number, not %ld", opt->name, v);
		return -1;
	}
	return 0;
}

/* 0 means unlimited for these. */
static int valid_limit(cfg_t *cfg, cfg_opt_t *opt)
{
	long v = cfg_opt_getnint(opt, cfg_opt_size(opt) - 1);
	if (v < 0 || v > INT_MAX) {
		cfg_error(cfg, "%s: must be 0 (unlimited) or a positive number, not %ld", opt->name, v);
		return -1;
	}
	return 0;
}

static int valid_override(cfg_t *cfg, cfg_opt_t *opt)
{
	long v = cfg_opt_getnint(opt, cfg_opt_size(opt) - 1);
	if (v < -1 || v > INT_MAX) {
		cfg_error(cfg, "%s: must be 0 (unlimited) or a positive number, not %ld", opt->name, v);
		return -1;
	}
	return 0;
}

static int valid_count(cfg_t *cfg, cfg_opt_t *opt)
{
	long v = cfg_opt_getnint(opt, cfg_opt_size(opt) - 1);
	if (v < 0 || v > 1024) {
		cfg_error(cfg, "%s: must be between 0 and 1024, not %ld", opt->name, v);
		return -1;
	}
	return 0;
}

static int valid_percent(cfg_t *cfg, cfg_opt_t *opt)
{
	long v = cfg_opt_getnint(opt, cfg_opt_size(opt) - 1);
	if (v < 0 || v > 100) {
		cfg_error(cfg, "%s: must be a percentage between 0 and 100, not %ld", opt->name, v);
		return -1;
	}
	return 0;
}

static int valid_ipv6_prefix(cfg_t *cfg, cfg_opt_t *opt)
{
	long v = cfg_opt_getnint(opt, cfg_opt_size(opt) - 1);
	if (v < 1 || v > 128) {
		cfg_error(cfg, "%s: must be a prefix length from 1 to 128, not %ld", opt->name, v);
		return -1;
	}
	return 0;
}

static int lookup(const char *const *names, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (strcasecmp(names[i], s) == 0)
			return (int)i;
	return -1;
}

static const char *const mode_names[] = { "smtps", "submission", "mx" };
static const char *const client_cert_names[] = { "none", "optional", "require" };
static const char *const relay_tls_names[] = { "none", "starttls", "implicit" };
static const char *const level_names[] = { "err", "warn", "info", "debug" };
static const char *const dnsbl_action_names[] = { "reject", "tag" };
static const char *const dns_timeout_names[] = { "tempfail", "pass" };

static int valid_enum(cfg_t *cfg, cfg_opt_t *opt, const char *const *names, size_t n)
{
	const char *s = cfg_opt_getnstr(opt, 0);
	if (lookup(names, n, s) >= 0)
		return 0;
	char list[128] = "";
	for (size_t i = 0; i < n; i++) {
		strncat(list, i ? ", " : "", sizeof(list) - strlen(list) - 1);
		strncat(list, names[i], sizeof(list) - strlen(list) - 1);
	}
	cfg_error(cfg, "%s: '%s' is not one of %s", opt->name, s, list);
	return -1;
}

/* Options whose value is one of a few words, by option name. */
static const struct {
	const char *option;
	const char *const *names;
	size_t n;
} enum_options[] = {
	{ "mode", mode_names, ARRAY_LEN(mode_names) },
	{ "client_cert", client_cert_names, ARRAY_LEN(client_cert_names) },
	{ "tls", relay_tls_names, ARRAY_LEN(relay_tls_names) },
	{ "level", level_names, ARRAY_LEN(level_names) },
	{ "dnsbl_action", dnsbl_action_names, ARRAY_LEN(dnsbl_action_names) },
	{ "on_timeout", dns_timeout_names, ARRAY_LEN(dns_timeout_names) },
};

static int valid_word(cfg_t *cfg, cfg_opt_t *opt)
{
	for (size_t i = 0; i < ARRAY_LEN(enum_options); i++)
		if (strcmp(enum_options[i].option, opt->name) == 0)
			return valid_enum(cfg, opt, enum_options[i].names, enum_options[i].n);
	fatal("conf: no word list for option %s", opt->name);
}

static int valid_address(cfg_t *cfg, cfg_opt_t *opt)
{
	char *host;
	unsigned port;
	const char *s = cfg_opt_getnstr(opt, 0);
	if (conf_parse_address(s, &host, &port) < 0) {
		cfg_error(cfg, "address: '%s' is not host:port (like 127.0.0.1:587 or [::1]:465)", s);
		return -1;
	}
	free(host);
	return 0;
}

static int valid_downstream(cfg_t *cfg, cfg_opt_t *opt)
{
	const char *s = cfg_opt_getnstr(opt, 0);
	char *host;
	unsigned port;
	if (*s == '\0' || strncmp(s, "lmtp:unix:/", 11) == 0)
		return 0;
	const char *rest = NULL;
	if (strncmp(s, "smtp://", 7) == 0)
		rest = s + 7;
	else if (strncmp(s, "lmtp://", 7) == 0)
		rest = s + 7;
	if (rest && conf_parse_address(rest, &host, &port) == 0) {
		free(host);
		return 0;
	}
	cfg_error(cfg, "downstream: '%s' is not smtp://host:port, lmtp://host:port or lmtp:unix:/path", s);
	return -1;
}

static int valid_readable(cfg_t *cfg, cfg_opt_t *opt)
{
	const char *v = cfg_opt_getnstr(opt, 0);
	if (!conf_err_target || !conf_err_target->check_files || !v)
		return 0;
	char *path = conf_path(conf_err_target->dir, v);
	int rc = access(path, R_OK);
	if (rc < 0)
		cfg_error(cfg, "%s: cannot read %s: %s", opt->name, path, strerror(errno));
	free(path);
	return rc < 0 ? -1 : 0;
}

/* Problems found later in the TLS files (a key that does not match its
 * certificate) are reported at the tls section. */
static int valid_tls(cfg_t *cfg, cfg_opt_t *opt)
{
	if (conf_err_target && conf_err_target->top)
		conf_err_target->tls_line = conf_err_target->top->line;
	return 0;
}

static int valid_listen(cfg_t *cfg, cfg_opt_t *opt)
{
	cfg_t *sec = cfg_opt_getnsec(opt, cfg_opt_size(opt) - 1);
	const char *title = cfg_title(sec);
	const char *mode = cfg_getstr(sec, "mode");
	if (!mode && lookup(mode_names, ARRAY_LEN(mode_names), title) < 0) {
		cfg_error(cfg, "listen %s: the title is not a mode (smtps, submission, mx); set mode = ...", title);
		return -1;
	}
	if (!cfg_getstr(sec, "address")) {
		cfg_error(cfg, "listen %s: address is required", title);
		return -1;
	}
	return 0;
}

/* ---- schema ------------------------------------------------------------- */

static cfg_opt_t listen_opts[] = {
	CFG_STR("mode", NULL, CFGF_NODEFAULT),
	CFG_STR("address", NULL, CFGF_NODEFAULT),
	CFG_STR("client_cert", "none", CFGF_NONE),
	CFG_BOOL("require_tls", cfg_true, CFGF_NONE),
	/* -1: the number from policy { } / limits { } */
	CFG_INT("max_recipients", -1, CFGF_NONE),
	CFG_INT("messages_per_hour", -1, CFGF_NONE),
	CFG_INT("recipients_per_hour", -1, CFGF_NONE),
	CFG_INT("max_connections_per_ip", -1, CFGF_NONE),
	CFG_INT("connections_per_ip_per_minute", -1, CFGF_NONE),
	CFG_END()
};

static cfg_opt_t log_opts[] = {
	CFG_BOOL("syslog", cfg_false, CFGF_NONE),
	CFG_STR("level", "info", CFGF_NONE),
	CFG_END()
};

static cfg_opt_t tls_opts[] = {
	CFG_STR("cert", NULL, CFGF_NODEFAULT),
	CFG_STR("key", NULL, CFGF_NODEFAULT),
	CFG_STR("ca", NULL, CFGF_NODEFAULT),
	CFG_STR("ciphers", NULL, CFGF_NODEFAULT),
	CFG_STR("handshake_timeout", "30s", CFGF_NONE),
	CFG_END()
};

static cfg_opt_t sasl_opts[] = {
	CFG_STR("service", "smtp", CFGF_NONE),
	CFG_STR_LIST("mechanisms", "{PLAIN,LOGIN,SCRAM-SHA-256}", CFGF_NONE),
	CFG_STR("sasldb", NULL, CFGF_NODEFAULT),
	CFG_STR("config_dir", NULL, CFGF_NODEFAULT),
	CFG_STR("fail_delay", "1s", CFGF_NONE),
	CFG_BOOL("credential_cache", cfg_true, CFGF_NONE),
	CFG_END()
};

static cfg_opt_t limits_opts[] = {
	CFG_STR("max_message_size", "50M", CFGF_NONE),
	CFG_INT("max_recipients", 100, CFGF_NONE),
	CFG_INT("max_command_line", 512, CFGF_NONE),
	CFG_INT("max_text_line", 1000, CFGF_NONE),
	/* RFC 5321 4.5.3.2: 5 minutes for commands, 10 for the DATA block. */
	CFG_STR("idle_timeout", "5m", CFGF_NONE),
	CFG_STR("data_timeout", "10m", CFGF_NONE),
	/* The data timer restarts only when this much more has come. */
	CFG_STR("data_progress", "1k", CFGF_NONE),
	/* A connection's whole life, whatever it does; 0: no cap. */
	CFG_STR("session_lifetime", "1h", CFGF_NONE),
	/* Under stress (this percentage of max_connections in use; 0: never),
	 * the shorter timeouts apply, as Postfix's stress-adaptive ones. */
	CFG_INT("stress_threshold", 80, CFGF_NONE),
	CFG_STR("stress_idle_timeout", "10s", CFGF_NONE),
	CFG_STR("stress_data_timeout", "1m", CFGF_NONE),
	CFG_INT("max_errors", 10, CFGF_NONE),
	CFG_INT("max_connections", 20000, CFGF_NONE),
	CFG_END()
};

static cfg_opt_t policy_opts[] = {
	CFG_STR_LIST("local_domains", "{}", CFGF_NONE),
	CFG_STR("sender_map", NULL, CFGF_NODEFAULT),
	CFG_BOOL("check_header_from", cfg_false, CFGF_NONE),
	CFG_STR_LIST("trusted_networks", "{}", CFGF_NONE),
	CFG_INT("messages_per_hour", 0, CFGF_NONE),
	CFG_INT("recipients_per_hour", 0, CFGF_NONE),
	CFG_INT("max_connections_per_ip", 50, CFGF_NONE),
	CFG_INT("connections_per_ip_per_minute", 0, CFGF_NONE),
	CFG_INT("auth_max_failures", 5, CFGF_NONE),
	CFG_INT("auth_ip_budget", 20, CFGF_NONE),
	CFG_STR("auth_window", "15m", CFGF_NONE),
	CFG_STR("auth_lockout", "15m", CFGF_NONE),
	CFG_STR("auth_delay_max", "8s", CFGF_NONE),
	CFG_BOOL("allow_untrusted_routing", cfg_false, CFGF_NONE),
	CFG_INT("ipv6_prefix", 64, CFGF_NONE),
	CFG_END()
};

static cfg_opt_t dns_opts[] = {
	CFG_STR_LIST("servers", "{}", CFGF_NONE),
	CFG_STR("timeout", "5s", CFGF_NONE),
	CFG_BOOL("reverse_lookup", cfg_true, CFGF_NONE),
	CFG_STR_LIST("dnsbl", "{}", CFGF_NONE),
	CFG_STR("dnsbl_action", "reject", CFGF_NONE),
	CFG_STR("on_timeout", "tempfail", CFGF_NONE),
	CFG_END()
};

static cfg_opt_t trace_opts[] = {
	CFG_BOOL("enabled", cfg_true, CFGF_NONE),
	CFG_STR("db", NULL, CFGF_NODEFAULT),  /* default: trace.db in the spool */
	CFG_STR("key_file", NULL, CFGF_NODEFAULT),
	CFG_BOOL("show_account", cfg_false, CFGF_NONE),
	CFG_END()
};

static cfg_opt_t spool_opts[] = {
	CFG_STR("directory", LOCALSTATEDIR_SPOOL, CFGF_NONE),
	CFG_END()
};

static cfg_opt_t relay_opts[] = {
	CFG_STR("downstream", "", CFGF_NONE),
	CFG_STR("maildir", LOCALSTATEDIR_MAILDIR, CFGF_NONE),
	CFG_STR("tls", "none", CFGF_NONE),
	CFG_BOOL("tls_verify", cfg_false, CFGF_NONE),
	CFG_STR("tls_ca", NULL, CFGF_NODEFAULT),
	CFG_INT("workers", 4, CFGF_NONE),
	CFG_STR("retry_min", "1m", CFGF_NONE),
	CFG_STR("retry_max", "1h", CFGF_NONE),
	CFG_STR("max_queue_time", "5d", CFGF_NONE),
	CFG_STR("timeout", "5m", CFGF_NONE),
	CFG_END()
};

static cfg_opt_t sandbox_opts[] = {
	CFG_BOOL("seccomp", cfg_true, CFGF_NONE),
	CFG_END()
};

static cfg_opt_t top_opts[] = {
	CFG_STR("hostname", NULL, CFGF_NODEFAULT),
	CFG_INT("loops", 0, CFGF_NONE),
	CFG_STR("user", NULL, CFGF_NODEFAULT),
	CFG_SEC("log", log_opts, CFGF_NONE),
	CFG_SEC("listen", listen_opts, CFGF_MULTI | CFGF_TITLE),
	CFG_SEC("tls", tls_opts, CFGF_NONE),
	CFG_SEC("sasl", sasl_opts, CFGF_NONE),
	CFG_SEC("limits", limits_opts, CFGF_NONE),
	CFG_SEC("policy", policy_opts, CFGF_NONE),
	CFG_SEC("dns", dns_opts, CFGF_NONE),
	CFG_SEC("trace", trace_opts, CFGF_NONE),
	CFG_SEC("spool", spool_opts, CFGF_NONE),
	CFG_SEC("relay", relay_opts, CFGF_NONE),
	CFG_SEC("sandbox", sandbox_opts, CFGF_NONE),
	CFG_END()
};

static void conf_set_validators(cfg_t *cfg)
{
	static const char *const sizes[] = { "limits|max_message_size", "limits|data_progress" };
	static const char *const durations[] = {
		"tls|handshake_timeout", "sasl|fail_delay", "limits|idle_timeout",
		"limits|data_timeout", "limits|session_lifetime", "limits|stress_idle_timeout",
		"limits|stress_data_timeout", "relay|retry_min", "relay|retry_max",
		"relay|max_queue_time", "relay|timeout",
	};
	static const char *const positives[] = {
		"limits|max_recipients", "limits|max_command_line", "limits|max_text_line",
		"limits|max_errors", "limits|max_connections", "relay|workers",
	};
	for (size_t i = 0; i < ARRAY_LEN(sizes); i++)
		cfg_set_validate_func(cfg, sizes[i], valid_size);
	for (size_t i = 0; i < ARRAY_LEN(durations); i++)
		cfg_set_validate_func(cfg, durations[i], valid_duration);
	for (size_t i = 0; i < ARRAY_LEN(positives); i++)
		cfg_set_validate_func(cfg, positives[i], valid_positive);
	cfg_set_validate_func(cfg, "loops", valid_count);
	cfg_set_validate_func(cfg, "limits|stress_threshold", valid_percent);
	cfg_set_validate_func(cfg, "listen", valid_listen);
	cfg_set_validate_func(cfg, "tls", valid_tls);
	cfg_set_validate_func(cfg, "tls|cert", valid_readable);
	cfg_set_validate_func(cfg, "tls|key", valid_readable);
	cfg_set_validate_func(cfg, "tls|ca", valid_readable);
	cfg_set_validate_func(cfg, "trace|key_file", valid_readable);
	cfg_set_validate_func(cfg, "dns|timeout", valid_duration);
	cfg_set_validate_func(cfg, "policy|sender_map", valid_readable);
	cfg_set_validate_func(cfg, "policy|auth_window", valid_duration);
	cfg_set_validate_func(cfg, "policy|auth_lockout", valid_duration);
	cfg_set_validate_func(cfg, "policy|auth_delay_max", valid_duration);
	cfg_set_validate_func(cfg, "policy|ipv6_prefix", valid_ipv6_prefix);
	static const char *const counts[] = {
		"policy|messages_per_hour", "policy|recipients_per_hour",
		"policy|max_connections_per_ip", "policy|connections_per_ip_per_minute",
		"policy|auth_max_failures", "policy|auth_ip_budget",
	};
	for (size_t i = 0; i < ARRAY_LEN(counts); i++)
		cfg_set_validate_func(cfg, counts[i], valid_limit);
	cfg_set_validate_func(cfg, "dns|dnsbl_action", valid_word);
	cfg_set_validate_func(cfg, "dns|on_timeout", valid_word);
	cfg_set_validate_func(cfg, "listen|mode", valid_word);
	cfg_set_validate_func(cfg, "listen|address", valid_address);
	cfg_set_validate_func(cfg, "listen|client_cert", valid_word);
	static const char *const overrides[] = {
		"listen|max_recipients", "listen|messages_per_hour", "listen|recipients_per_hour",
		"listen|max_connections_per_ip", "listen|connections_per_ip_per_minute",
	};
	for (size_t i = 0; i < ARRAY_LEN(overrides); i++)
		cfg_set_validate_func(cfg, overrides[i], valid_override);
	cfg_set_validate_func(cfg, "log|level", valid_word);
	cfg_set_validate_func(cfg, "relay|tls", valid_word);
	cfg_set_validate_func(cfg, "relay|downstream", valid_downstream);
}

/* ---- filling struct conf ----------------------------------------------- */

int conf_parse_address(const char *addr, char **host, unsigned *port)
{
	const char *colon;
	const char *h = addr;
	size_t hlen;
	if (*addr == '[') {
		const char *close = strchr(addr, ']');
		if (!close || close[1] != ':')
			return -1;
		h = addr + 1;
		hlen = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(addr, ':');
		if (!colon)
			return -1;
		hlen = (size_t)(colon - addr);
	}
	char *end;
	errno = 0;
	unsigned long p = strtoul(colon + 1, &end, 10);
	if (hlen == 0 || colon[1] == '\0' || *end != '\0' || errno || p == 0 || p > 65535)
		return -1;
	*host = str_ndup(h, hlen);
	*port = (unsigned)p;
	return 0;
}

static char *conf_dir_of(const char *path)
{
	const char *slash = path ? strrchr(path, '/') : NULL;
	if (!slash)
		return str_dup(".");
	if (slash == path)
		return str_dup("/");
	return str_ndup(path, (size_t)(slash - path));
}

/* Paths in the file are relative to the file, so a demo directory works
 * wherever it is. */
static char *conf_path(const char *dir, const char *value)
{
	if (!value || !*value)
		return NULL;
	if (value[0] == '/' || !dir)
		return str_dup(value);
	return str_printf("%s/%s", dir, value);
}

static unsigned conf_seconds(cfg_t *sec, const char *name)
{
	uint64_t v = 0;
	(void)str_parse_duration(cfg_getstr(sec, name), &v);
	return (unsigned)v;
}

static size_t conf_strlist(cfg_t *sec, const char *name, char ***out)
{
	size_t n = cfg_size(sec, name);
	*out = xcalloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++)
		(*out)[i] = str_dup(cfg_getnstr(sec, name, (unsigned)i));
	return n;
}

static void conf_strlist_free(char **list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(list[i]);
	free(list);
}

static void conf_fill_listens(struct conf *c, cfg_t *cfg)
{
	c->nlistens = cfg_size(cfg, "listen");
	c->listens = xcalloc(c->nlistens ? c->nlistens : 1, sizeof(*c->listens));
	for (size_t i = 0; i < c->nlistens; i++) {
		cfg_t *sec = cfg_getnsec(cfg, "listen", (unsigned)i);
		struct conf_listen *l = &c->listens[i];
		const char *mode = cfg_getstr(sec, "mode");
		if (!mode)
			mode = cfg_title(sec);
		l->mode = (enum conf_listen_mode)lookup(mode_names, ARRAY_LEN(mode_names), mode);
		l->name = str_dup(cfg_title(sec));
		l->address = str_dup(cfg_getstr(sec, "address"));
		(void)conf_parse_address(l->address, &l->host, &l->port);
		l->client_cert = (enum conf_client_cert)lookup(client_cert_names,
			ARRAY_LEN(client_cert_names), cfg_getstr(sec, "client_cert"));
		l->require_auth = l->mode != CONF_MODE_MX;
		l->require_tls = cfg_getbool(sec, "require_tls");
		l->max_recipients = cfg_getint(sec, "max_recipients");
		l->messages_per_hour = cfg_getint(sec, "messages_per_hour");
		l->recipients_per_hour = cfg_getint(sec, "recipients_per_hour");
		l->max_connections_per_ip = cfg_getint(sec, "max_connections_per_ip");
		l->connections_per_ip_per_minute = cfg_getint(sec, "connections_per_ip_per_minute");
	}
}

static void conf_fill(struct conf *c, cfg_t *cfg, const char *dir)
{
	char host[256] = "localhost";
	const char *hn = cfg_getstr(cfg, "hostname");
	if (!hn) {
		gethostname(host, sizeof(host) - 1);
		hn = host;
	}
	c->hostname = str_dup(hn);
	c->loops = (unsigned)cfg_getint(cfg, "loops");
	c->user = str_dup(cfg_getstr(cfg, "user"));

	cfg_t *log = cfg_getsec(cfg, "log");
	c->log_syslog = cfg_getbool(log, "syslog");
	c->log_level = lookup(level_names, ARRAY_LEN(level_names), cfg_getstr(log, "level"));

	conf_fill_listens(c, cfg);

	cfg_t *tls = cfg_getsec(cfg, "tls");
	c->tls_cert = conf_path(dir, cfg_getstr(tls, "cert"));
	c->tls_key = conf_path(dir, cfg_getstr(tls, "key"));
	c->tls_ca = conf_path(dir, cfg_getstr(tls, "ca"));
	c->tls_ciphers = str_dup(cfg_getstr(tls, "ciphers"));
	c->tls_handshake_timeout = conf_seconds(tls, "handshake_timeout");

	cfg_t *sasl = cfg_getsec(cfg, "sasl");
	c->sasl_service = str_dup(cfg_getstr(sasl, "service"));
	struct buf mechs;
	buf_init(&mechs);
	for (unsigned i = 0; i < cfg_size(sasl, "mechanisms"); i++)
		buf_printf(&mechs, "%s%s", i ? " " : "", cfg_getnstr(sasl, "mechanisms", i));
	c->sasl_mechanisms = mechs.data ? mechs.data : str_dup("");
	c->sasl_sasldb = conf_path(dir, cfg_getstr(sasl, "sasldb"));
	c->sasl_config_dir = conf_path(dir, cfg_getstr(sasl, "config_dir"));
	c->sasl_credential_cache = cfg_getbool(sasl, "credential_cache");
	uint64_t ms = 0;
	(void)str_parse_duration(cfg_getstr(sasl, "fail_delay"), &ms);
	c->auth_fail_delay_ms = (unsigned)(ms * 1000);

	cfg_t *lim = cfg_getsec(cfg, "limits");
	(void)str_parse_size(cfg_getstr(lim, "max_message_size"), &c->max_message_size);
	c->max_recipients = (unsigned)cfg_getint(lim, "max_recipients");
	c->max_command_line = (unsigned)cfg_getint(lim, "max_command_line");
	c->max_text_line = (unsigned)cfg_getint(lim, "max_text_line");
	c->idle_timeout = conf_seconds(lim, "idle_timeout");
	c->data_timeout = conf_seconds(lim, "data_timeout");
	(void)str_parse_size(cfg_getstr(lim, "data_progress"), &c->data_progress);
	c->session_lifetime = conf_seconds(lim, "session_lifetime");
	c->stress_threshold = (unsigned)cfg_getint(lim, "stress_threshold");
	c->stress_idle_timeout = conf_seconds(lim, "stress_idle_timeout");
	c->stress_data_timeout = conf_seconds(lim, "stress_data_timeout");
	c->max_errors = (unsigned)cfg_getint(lim, "max_errors");
	c->max_connections = (unsigned)cfg_getint(lim, "max_connections");

	cfg_t *pol = cfg_getsec(cfg, "policy");
	c->nlocal_domains = conf_strlist(pol, "local_domains", &c->local_domains);
	c->sender_map = conf_path(dir, cfg_getstr(pol, "sender_map"));
	c->check_header_from = cfg_getbool(pol, "check_header_from");
	c->ntrusted_networks = conf_strlist(pol, "trusted_networks", &c->trusted_networks);
	c->messages_per_hour = (unsigned)cfg_getint(pol, "messages_per_hour");
	c->recipients_per_hour = (unsigned)cfg_getint(pol, "recipients_per_hour");
	c->max_connections_per_ip = (unsigned)cfg_getint(pol, "max_connections_per_ip");
	c->connections_per_ip_per_minute = (unsigned)cfg_getint(pol, "connections_per_ip_per_minute");
	c->auth_max_failures = (unsigned)cfg_getint(pol, "auth_max_failures");
	c->auth_ip_budget = (unsigned)cfg_getint(pol, "auth_ip_budget");
	c->auth_window = conf_seconds(pol, "auth_window");
	c->auth_lockout = conf_seconds(pol, "auth_lockout");
	c->auth_delay_max_ms = conf_seconds(pol, "auth_delay_max") * 1000;
	c->allow_untrusted_routing = cfg_getbool(pol, "allow_untrusted_routing");
	c->ipv6_prefix = (unsigned)cfg_getint(pol, "ipv6_prefix");

	cfg_t *dns = cfg_getsec(cfg, "dns");
	c->ndns_servers = conf_strlist(dns, "servers", &c->dns_servers);
	c->dns_timeout_ms = conf_seconds(dns, "timeout") * 1000;
	c->dns_reverse = cfg_getbool(dns, "reverse_lookup");
	c->ndnsbl_zones = conf_strlist(dns, "dnsbl", &c->dnsbl_zones);
	c->dnsbl_reject = strcasecmp(cfg_getstr(dns, "dnsbl_action"), "reject") == 0;
	c->dns_timeout_tempfail = strcasecmp(cfg_getstr(dns, "on_timeout"), "tempfail") == 0;

	cfg_t *tr = cfg_getsec(cfg, "trace");
	c->trace_enabled = cfg_getbool(tr, "enabled");
	c->trace_db = conf_path(dir, cfg_getstr(tr, "db"));
	c->trace_key_file = conf_path(dir, cfg_getstr(tr, "key_file"));
	c->trace_show_account = cfg_getbool(tr, "show_account");

	c->spool_dir = conf_path(dir, cfg_getstr(cfg_getsec(cfg, "spool"), "directory"));
	/* The spool is the one place the daemon user surely may write. */
	if (!c->trace_db)
		c->trace_db = str_printf("%s/trace.db", c->spool_dir);

	cfg_t *rel = cfg_getsec(cfg, "relay");
	const char *ds = cfg_getstr(rel, "downstream");
	c->relay_downstream = *ds ? str_dup(ds) : NULL;
	c->relay_maildir = conf_path(dir, cfg_getstr(rel, "maildir"));
	c->relay_tls = (enum conf_relay_tls)lookup(relay_tls_names, ARRAY_LEN(relay_tls_names),
	                                           cfg_getstr(rel, "tls"));
	c->relay_tls_verify = cfg_getbool(rel, "tls_verify");
	c->relay_tls_ca = conf_path(dir, cfg_getstr(rel, "tls_ca"));
	c->relay_workers = (unsigned)cfg_getint(rel, "workers");
	c->relay_retry_min = conf_seconds(rel, "retry_min");
	c->relay_retry_max = conf_seconds(rel, "retry_max");
	c->relay_max_queue_time = conf_seconds(rel, "max_queue_time");
	c->relay_timeout = conf_seconds(rel, "timeout");

	c->sandbox_seccomp = cfg_getbool(cfg_getsec(cfg, "sandbox"), "seccomp");
}

/* Checks that need the whole file; no single line to blame. */
static int conf_check(const struct conf *c, char *err, size_t errlen)
{
	/* The host name also names this gate in trace headers. */
	size_t hl = strlen(c->hostname);
	if (hl == 0 || hl > 255 || strspn(c->hostname, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "abcdefghijklmnopqrstuvwxyz0123456789.-_") != hl) {
		snprintf(err, errlen, "%s: hostname '%s' is not a host name", c->path, c->hostname);
		return -1;
	}
	if (c->nlistens == 0) {
		snprintf(err, errlen, "%s: no listen section: Postern would accept nothing", c->path);
		return -1;
	}
	if (!c->tls_cert || !c->tls_key) {
		snprintf(err, errlen, "%s: tls { cert key } are required: Postern accepts mail only over TLS", c->path);
		return -1;
	}
	for (size_t i = 0; i < c->nlistens; i++) {
		if (c->listens[i].mode == CONF_MODE_MX && c->nlocal_domains == 0) {
			snprintf(err, errlen, "%s: listen %s: an mx listener needs policy { local_domains }",
			         c->path, c->listens[i].name);
			return -1;
		}
		if (c->listens[i].client_cert != CONF_CLIENT_CERT_NONE && !c->tls_ca) {
			snprintf(err, errlen, "%s: listen %s: client_cert needs tls { ca }",
			         c->path, c->listens[i].name);
			return -1;
		}
	}
	if (c->relay_retry_min == 0 || c->relay_retry_max < c->relay_retry_min) {
		snprintf(err, errlen, "%s: relay: retry_min must be > 0 and <= retry_max", c->path);
		return -1;
	}
	return 0;
}

struct conf *conf_load(const char *path, char *err, size_t errlen)
{
	return conf_load_flags(path, 0, err, errlen);
}

struct conf *conf_load_flags(const char *path, unsigned flags, char *err, size_t errlen)
{
	char *dir = path ? conf_dir_of(path) : NULL;
	struct conf_errctx ec = { err, errlen, false, NULL, dir, 0,
	                          !(flags & CONF_NO_FILE_CHECKS) };
	snprintf(err, errlen, "unknown configuration error");
	cfg_t *cfg = cfg_init(top_opts, CFGF_NONE);
	if (!cfg) {
		snprintf(err, errlen, "cannot initialise the configuration parser");
		return NULL;
	}
	ec.top = cfg;
	conf_err_target = &ec;
	cfg_set_error_function(cfg, conf_errfunc);
	conf_set_validators(cfg);

	int rc = path ? cfg_parse(cfg, path) : CFG_SUCCESS;
	conf_err_target = NULL;
	if (rc == CFG_FILE_ERROR) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno ? errno : ENOENT));
		cfg_free(cfg);
		free(dir);
		return NULL;
	}
	if (rc != CFG_SUCCESS || ec.failed) {
		if (!ec.failed)
			snprintf(err, errlen, "%s: syntax error", path);
		cfg_free(cfg);
		free(dir);
		return NULL;
	}

	struct conf *c = xcalloc(1, sizeof(*c));
	c->path = str_dup(path ? path : "(defaults)");
	c->tls_line = ec.tls_line;
	conf_fill(c, cfg, dir);
	free(dir);
	cfg_free(cfg);
	if (conf_check(c, err, errlen) < 0) {
		conf_free(c);
		return NULL;
	}
	return c;
}

void conf_free(struct conf *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->nlistens; i++) {
		free(c->listens[i].name);
		free(c->listens[i].address);
		free(c->listens[i].host);
	}
	free(c->listens);
	conf_strlist_free(c->local_domains, c->nlocal_domains);
	conf_strlist_free(c->dns_servers, c->ndns_servers);
	conf_strlist_free(c->dnsbl_zones, c->ndnsbl_zones);
	conf_strlist_free(c->trusted_networks, c->ntrusted_networks);
	char **strs[] = {
		&c->path, &c->hostname, &c->user, &c->tls_cert, &c->tls_key, &c->tls_ca,
		&c->tls_ciphers, &c->sasl_service, &c->sasl_mechanisms, &c->sasl_sasldb,
		&c->sasl_config_dir, &c->spool_dir, &c->relay_downstream, &c->relay_maildir,
		&c->relay_tls_ca, &c->trace_db, &c->trace_key_file, &c->sender_map,
	};
	for (size_t i = 0; i < ARRAY_LEN(strs); i++)
		free(*strs[i]);
	free(c);
}

const char *conf_mode_name(enum conf_listen_mode mode)
{
	return mode_names[mode];
}
