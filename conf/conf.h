/*
 * conf.h - the configuration, read with libconfuse (the only user of it).
 *
 * conf_load() fills a struct conf from a file, or from the embedded
 * defaults when path is NULL; every error names file:line and the reason.
 * Ownership: the struct conf belongs to the caller, freed by conf_free();
 * all strings in it are owned by it.
 */
#ifndef POSTERN_CONF_H
#define POSTERN_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum conf_listen_mode { CONF_MODE_SMTPS, CONF_MODE_SUBMISSION, CONF_MODE_MX };
enum conf_client_cert { CONF_CLIENT_CERT_NONE, CONF_CLIENT_CERT_OPTIONAL, CONF_CLIENT_CERT_REQUIRE };
enum conf_relay_tls { CONF_RELAY_TLS_NONE, CONF_RELAY_TLS_STARTTLS, CONF_RELAY_TLS_IMPLICIT };

struct conf_listen {
	enum conf_listen_mode mode;
	char *name;            /* "smtps", "submission", "mx", or the title */
	char *address;         /* "127.0.0.1:465", "[::1]:587" */
	char *host;            /* parsed from address */
	unsigned port;
	enum conf_client_cert client_cert;
	bool require_auth;     /* smtps/submission: yes; mx: no */
	bool require_tls;      /* refuse MAIL before TLS (default yes) */
	/* Per-listener overrides of the policy numbers; -1: the policy's. */
	long max_recipients;
	long messages_per_hour;
	long recipients_per_hour;
	long max_connections_per_ip;
	long connections_per_ip_per_minute;
};

struct conf {
	char *path;            /* the file read, or "(defaults)" */
	char *hostname;
	unsigned loops;        /* 0: one per core */
	char *user;            /* drop privileges to this user, or NULL */
	bool log_syslog;
	int log_level;         /* enum log_level */

	struct conf_listen *listens;
	size_t nlistens;

	/* tls */
	char *tls_cert;
	char *tls_key;
	char *tls_ca;
	char *tls_ciphers;
	int tls_line;          /* where the tls section is, for later errors */
	unsigned tls_handshake_timeout;

	/* sasl */
	char *sasl_service;
	char *sasl_mechanisms;  /* space separated */
	char *sasl_sasldb;
	char *sasl_config_dir;
	bool sasl_credential_cache;
	unsigned auth_fail_delay_ms;

	/* limits */
	uint64_t max_message_size;
	unsigned max_recipients;
	unsigned max_command_line;
	unsigned max_text_line;
	unsigned idle_timeout;       /* from one command line to the next */
	unsigned data_timeout;       /* without data_progress bytes of the message */
	uint64_t data_progress;
	unsigned session_lifetime;   /* 0: no cap */
	unsigned stress_threshold;   /* percent of max_connections; 0: never stressed */
	unsigned stress_idle_timeout;
	unsigned stress_data_timeout;
	unsigned max_errors;
	unsigned max_connections;

	/* policy */
	char **local_domains;
	size_t nlocal_domains;
	char *sender_map;          /* NULL: an account owns the address it is named */
	bool check_header_from;
	char **trusted_networks;
	size_t ntrusted_networks;
	unsigned messages_per_hour;    /* per account; 0: unlimited */
	unsigned recipients_per_hour;
	unsigned max_connections_per_ip;
	unsigned connections_per_ip_per_minute;
	unsigned auth_max_failures;    /* per (client IP, account) before a lockout */
	unsigned auth_ip_budget;       /* per client IP across accounts */
	unsigned auth_window;          /* seconds failures are remembered */
	unsigned auth_lockout;         /* seconds */
	unsigned auth_delay_max_ms;
	bool allow_untrusted_routing;  /* mx: '%', '!', '@' in local parts */
	unsigned ipv6_prefix;      /* per-address counters key IPv6 on this network */

	/* dns */
	char **dns_servers;      /* empty: /etc/resolv.conf */
	size_t ndns_servers;
	unsigned dns_timeout_ms;
	bool dns_reverse;        /* reverse lookup with forward confirmation */
	char **dnsbl_zones;      /* checked on mx listeners */
	size_t ndnsbl_zones;
	bool dnsbl_reject;       /* false: only tag (log and trace) */
	bool dns_timeout_tempfail; /* an undecided DNSBL check: 451 (true) or pass */

	/* trace */
	bool trace_enabled;
	char *trace_db;
	char *trace_key_file;    /* NULL: no trace header */
	bool trace_show_account; /* name the account in the Received header */

	/* spool and relay */
	char *spool_dir;
	char *relay_downstream;  /* NULL: Maildir */
	char *relay_maildir;
	enum conf_relay_tls relay_tls;
	bool relay_tls_verify;
	char *relay_tls_ca;
	unsigned relay_workers;
	unsigned relay_retry_min;
	unsigned relay_retry_max;
	unsigned relay_max_queue_time;
	unsigned relay_timeout;

	/* sandbox */
	bool sandbox_seccomp;    /* a system call allowlist once start-up is done */
};

/* Reads path (NULL: defaults only). Returns NULL and writes "file:line:
 * reason" (or "file: reason") into err on any error. */
struct conf *conf_load(const char *path, char *err, size_t errlen);
/* CONF_NO_FILE_CHECKS: do not check that the files named (certificates,
 * keys) can be read: a reload after dropping privileges reads none of
 * them again. */
enum { CONF_NO_FILE_CHECKS = 1 << 0 };
struct conf *conf_load_flags(const char *path, unsigned flags, char *err, size_t errlen);
void conf_free(struct conf *c);
const char *conf_mode_name(enum conf_listen_mode mode);

/* Splits "host:port" / "[v6]:port" into host and port. 0 or -1. */
int conf_parse_address(const char *addr, char **host, unsigned *port);

#endif
