/*
 * auth.c - Cyrus SASL 2.1 server glue behind the auth_* object.
 *
 * auth_init() sets up the library once per process: pthread mutexes (steps
 * run on several worker threads), our options (GETOPT), an optional Cyrus
 * config directory (GETCONFPATH) and a log callback that never passes on
 * protocol traces. Each auth_session wraps one sasl_conn_t; base64 is
 * decoded and encoded here so that server/ only ever sees text.
 *
 * Ownership: auth_session_new() returns a session the caller frees with
 * auth_session_free(). Every string a getter returns is owned by the
 * session and stays valid until the next auth_start() on it or until it
 * is freed. Decoded client data (passwords) is wiped before it is freed.
 */
#include "auth/auth.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <sasl/sasl.h>
#include <sasl/saslutil.h>

#include "auth/cache.h"

/* RFC 4954 allows 12288 octets per AUTH line; anything longer is abuse. */
#define MAX_B64_LEN 16384
/* Enough for any user name worth logging or throttling on. */
#define MAX_USER_LEN 256
#define MAX_ERROR_LEN 200
/* Logins remembered by the credential cache. */
#define CACHE_SLOTS 4096

/* Cyrus stores every callback as int (*)(void); going through the generic
 * function pointer type keeps -Wcast-function-type quiet. */
#define SASL_CB_PROC(fn) ((int (*)(void))(void (*)(void))(fn))

struct auth_session {
	sasl_conn_t *conn;
	char *realm;      /* server name given to Cyrus; scopes cache entries */
	char *mechs;      /* cached sasl_listmech() result */
	char *username;   /* the account after AUTH_OK (auth_account_name) */
	char *mech;       /* mechanism name after AUTH_OK */
	char *attempted;  /* user name the client tried, raw, bounded */
	char *attempted_account; /* ... and the account it names */
	char mech_try[SASL_MECHNAMEMAX + 1]; /* mechanism of this exchange */
	char error[MAX_ERROR_LEN];
	bool active;      /* an exchange is in progress */
	bool final_sent;  /* server-final data sent, waiting for the empty reply */
	bool saw_client;  /* the exchange already carried client data */
	bool done;        /* authenticated */
	bool cached;      /* ... by the credential cache, not by Cyrus */
	bool malformed;   /* the last failure was undecodable client data */
};

/* Process-wide state, written only by auth_init()/auth_shutdown(). */
static struct {
	bool ready;
	bool file_picks_backend; /* <config_dir>/<app>.conf chooses pwcheck */
	char *service;
	char *app_name;
	char *config_dir;
	char *sasldb;
	char *mech_list;
	sasl_callback_t callbacks[4];
} g;

/* ---- library callbacks ------------------------------------------------ */

static void *mutex_alloc(void)
{
	pthread_mutex_t *m = malloc(sizeof(*m));
	if (m && pthread_mutex_init(m, NULL) != 0) {
		free(m);
		return NULL;
	}
	return m;
}

static int mutex_lock(void *m)
{
	return pthread_mutex_lock(m) == 0 ? SASL_OK : SASL_FAIL;
}

static int mutex_unlock(void *m)
{
	return pthread_mutex_unlock(m) == 0 ? SASL_OK : SASL_FAIL;
}

static void mutex_free(void *m)
{
	if (!m)
		return;
	pthread_mutex_destroy(m);
	free(m);
}

static const char *option_value(const char *option)
{
	if (strcmp(option, "mech_list") == 0)
		return g.mech_list;
	if (strcmp(option, "sasldb_path") == 0)
		return g.sasldb;
	/* Without an operator's Cyrus file, sasldb is the backend; with one,
	 * the file may choose saslauthd or LDAP instead. */
	if (g.file_picks_backend)
		return NULL;
	if (strcmp(option, "pwcheck_method") == 0)
		return "auxprop";
	if (strcmp(option, "auxprop_plugin") == 0)
		return "sasldb";
	return NULL;
}

/* Answering SASL_FAIL makes Cyrus fall back to its own config file. */
static int getopt_cb(void *ctx, const char *plugin, const char *option,
                     const char **result, unsigned *len)
{
	(void)ctx;
	(void)plugin;
	const char *v = option ? option_value(option) : NULL;
	if (!v)
		return SASL_FAIL;
	*result = v;
	if (len)
		*len = (unsigned)strlen(v);
	return SASL_OK;
}

static int confpath_cb(void *ctx, const char **path)
{
	(void)ctx;
	*path = g.config_dir;
	return SASL_OK;
}

static int log_cb(void *ctx, int level, const char *message)
{
	(void)ctx;
	/* TRACE carries protocol messages (SCRAM salts and proofs allow an
	 * offline guess) and PASS carries passwords: never let them out. */
	if (!message || level <= SASL_LOG_NONE || level >= SASL_LOG_TRACE)
		return SASL_OK;
	switch (level) {
	case SASL_LOG_ERR:
		log_err("event=sasl msg=%s", log_q(message));
		break;
	case SASL_LOG_WARN:
		log_warn("event=sasl msg=%s", log_q(message));
		break;
	case SASL_LOG_FAIL:
	case SASL_LOG_NOTE:
		/* Failed logins are routine; server/ logs them with context. */
		log_info("event=sasl msg=%s", log_q(message));
		break;
	default:
		log_debug("event=sasl msg=%s", log_q(message));
		break;
	}
	return SASL_OK;
}

/* ---- initialisation --------------------------------------------------- */

static char *dup_or_null(const char *s)
{
	return s && *s ? str_dup(s) : NULL;
}

static void free_globals(void)
{
	free(g.service);
	free(g.app_name);
	free(g.config_dir);
	free(g.sasldb);
	free(g.mech_list);
	memset(&g, 0, sizeof(g));
}

static bool cyrus_file_exists(void)
{
	if (!g.config_dir)
		return false;
	char *path = str_printf("%s/%s.conf", g.config_dir, g.app_name);
	bool found = access(path, F_OK) == 0;
	free(path);
	return found;
}

static void setup_callbacks(void)
{
	size_t n = 0;
	g.callbacks[n++] = (sasl_callback_t){ SASL_CB_GETOPT, SASL_CB_PROC(getopt_cb), NULL };
	g.callbacks[n++] = (sasl_callback_t){ SASL_CB_LOG, SASL_CB_PROC(log_cb), NULL };
	if (g.config_dir)
		g.callbacks[n++] = (sasl_callback_t){ SASL_CB_GETCONFPATH,
		                                      SASL_CB_PROC(confpath_cb), NULL };
	g.callbacks[n] = (sasl_callback_t){ SASL_CB_LIST_END, NULL, NULL };
}

/* Cyrus reads a missing sasldb file as "no such user"; that is the
 * operator's mistake, and 535 would make clients drop saved passwords. */
static bool sasldb_missing(void)
{
	return !g.file_picks_backend && g.sasldb && access(g.sasldb, R_OK) != 0;
}

static bool mech_in_list(const char *list, const char *mech)
{
	size_t n = strlen(mech);
	for (const char *p = list; *p;) {
		size_t len = strcspn(p, " ");
		if (len == n && strncasecmp(p, mech, n) == 0)
			return true;
		p += len;
		p += strspn(p, " ");
	}
	return false;
}

/* A typo or a missing plugin only narrows the offer: say so. */
static void warn_unavailable(const char *offer)
{
	if (!g.mech_list)
		return;
	char *list = str_dup(g.mech_list);
	char *save = NULL;
	for (char *m = strtok_r(list, " ", &save); m; m = strtok_r(NULL, " ", &save)) {
		/* EXTERNAL appears only once a session has a certificate. */
		if (strcasecmp(m, "EXTERNAL") != 0 && !mech_in_list(offer, m))
			log_warn("event=sasl_init mech=%s msg=\"mechanism not available\"", m);
	}
	free(list);
}

/* An empty offer is a configuration error, caught before any client. */
static int probe_mechanisms(char *err, size_t errlen)
{
	struct auth_session *s = auth_session_new(NULL, NULL, NULL, 0, NULL);
	if (!s) {
		snprintf(err, errlen, "cannot create a SASL connection");
		return -1;
	}
	const char *offer = auth_mechanisms(s);
	int rc = 0;
	if (!*offer) {
		snprintf(err, errlen, "no SASL mechanism available (mech_list \"%s\")",
		         g.mech_list ? g.mech_list : "");
		rc = -1;
	} else {
		warn_unavailable(offer);
		log_info("event=sasl_init mechanisms=\"%s\"", offer);
	}
	auth_session_free(s);
	return rc;
}

int auth_init(const struct auth_conf *conf, char *err, size_t errlen)
{
	if (g.ready) {
		snprintf(err, errlen, "auth_init called twice");
		return -1;
	}
	g.service = str_dup(conf->service && *conf->service ? conf->service : "smtp");
	g.app_name = str_dup(conf->app_name && *conf->app_name ? conf->app_name : "postern");
	g.config_dir = dup_or_null(conf->config_dir);
	g.sasldb = dup_or_null(conf->sasldb);
	g.mech_list = dup_or_null(conf->mech_list);
	g.file_picks_backend = cyrus_file_exists();
	setup_callbacks();

	/* Must precede sasl_server_init(): Cyrus allocates its locks there. */
	sasl_set_mutex(mutex_alloc, mutex_lock, mutex_unlock, mutex_free);
	int r = sasl_server_init(g.callbacks, g.app_name);
	if (r != SASL_OK) {
		snprintf(err, errlen, "sasl_server_init: %s",
		         sasl_errstring(r, NULL, NULL));
		free_globals();
		return -1;
	}
	g.ready = true;
	if (sasldb_missing())
		log_warn("event=sasl_init sasldb=\"%s\" msg=\"not readable\"", g.sasldb);
	if (probe_mechanisms(err, errlen) < 0) {
		auth_shutdown();
		return -1;
	}
	/* Only a sasldb we name can be watched for changes; a Cyrus file may
	 * send passwords anywhere (saslauthd, LDAP). */
	if (conf->cache && g.sasldb && !g.file_picks_backend &&
	    auth_cache_init(g.sasldb, CACHE_SLOTS, AUTH_CACHE_MAX_AGE, err, errlen) < 0) {
		auth_shutdown();
		return -1;
	}
	return 0;
}

void auth_shutdown(void)
{
	if (!g.ready)
		return;
	auth_cache_shutdown();
	sasl_server_done();
	free_globals();
}


/* ---- sessions --------------------------------------------------------- */

static int set_properties(sasl_conn_t *conn, unsigned ssf, const char *external_id)
{
	/* Plaintext mechanisms stay allowed: AUTH is only offered after TLS.
	 * No SASL security layer: TLS already protects the connection. */
	sasl_security_properties_t props = {
		.min_ssf = 0,
		.max_ssf = 0,
		.maxbufsize = 0,
		.security_flags = SASL_SEC_NOANONYMOUS,
	};
	sasl_ssf_t ext_ssf = ssf;
	if (sasl_setprop(conn, SASL_SEC_PROPS, &props) != SASL_OK)
		return -1;
	if (sasl_setprop(conn, SASL_SSF_EXTERNAL, &ext_ssf) != SASL_OK)
		return -1;
	if (external_id && sasl_setprop(conn, SASL_AUTH_EXTERNAL, external_id) != SASL_OK)
		return -1;
	return 0;
}

struct auth_session *auth_session_new(const char *server_fqdn, const char *local,
                                      const char *remote, unsigned ssf,
                                      const char *external_id)
{
	if (!g.ready)
		fatal("auth_session_new before auth_init");
	struct auth_session *s = xcalloc(1, sizeof(*s));
	s->realm = server_fqdn ? str_dup(server_fqdn) : NULL;
	/* SASL_SUCCESS_DATA: we turn server-final data into the RFC 4954
	 * extra round trip ourselves and insist on an empty reply to it. */
	int r = sasl_server_new(g.service, server_fqdn, NULL, local, remote, NULL,
	                        SASL_SUCCESS_DATA, &s->conn);
	if (r != SASL_OK) {
		log_err("event=sasl_error op=sasl_server_new msg=\"%s\"",
		        sasl_errstring(r, NULL, NULL));
		goto fail;
	}
	if (set_properties(s->conn, ssf, external_id) < 0) {
		log_err("event=sasl_error op=sasl_setprop msg=\"%s\"",
		        sasl_errdetail(s->conn));
		goto fail;
	}
	return s;
fail:
	auth_session_free(s);
	return NULL;
}

static void reset_attempt(struct auth_session *s)
{
	free(s->username);
	free(s->mech);
	free(s->attempted);
	free(s->attempted_account);
	s->username = s->mech = s->attempted = s->attempted_account = NULL;
	s->mech_try[0] = '\0';
	s->error[0] = '\0';
	s->active = s->final_sent = s->saw_client = s->done = s->cached = false;
	s->malformed = false;
}

void auth_session_free(struct auth_session *s)
{
	if (!s)
		return;
	reset_attempt(s);
	if (s->conn)
		sasl_dispose(&s->conn);
	free(s->mechs);
	free(s->realm);
	free(s);
}

const char *auth_mechanisms(struct auth_session *s)
{
	if (s->mechs)
		return s->mechs;
	const char *list = NULL;
	unsigned len = 0;
	int count = 0;
	int r = sasl_listmech(s->conn, NULL, "", " ", "", &list, &len, &count);
	if (r != SASL_OK || !list) {
		log_warn("event=sasl_error op=sasl_listmech msg=\"%s\"",
		         sasl_errstring(r, NULL, NULL));
		list = "";
		len = 0;
	}
	s->mechs = str_ndup(list, len);
	return s->mechs;
}

bool auth_mech_offered(struct auth_session *s, const char *mech)
{
	return mech && *mech && mech_in_list(auth_mechanisms(s), mech);
}

/* ---- exchange helpers ------------------------------------------------- */

static void set_error(struct auth_session *s, const char *msg)
{
	str_sanitize(s->error, sizeof(s->error), msg, strlen(msg));
}

/* Kept raw: a sanitised copy would make a"b and a?b one key. Logs quote
 * it (log_q). */
static void set_attempted(struct auth_session *s, const char *user, size_t len)
{
	len = strnlen(user, len);
	if (s->attempted || len == 0)
		return;
	s->attempted = str_ndup(user, len < MAX_USER_LEN ? len : MAX_USER_LEN);
	s->attempted_account = auth_account_name(s->attempted, s->realm);
}

/* PLAIN: authzid NUL authcid NUL password. */
static void note_plain_user(struct auth_session *s, const char *in, size_t len)
{
	const char *nul = memchr(in, '\0', len);
	if (!nul)
		return;
	const char *user = nul + 1;
	size_t rest = len - (size_t)(user - in);
	const char *end = memchr(user, '\0', rest);
	if (end)
		set_attempted(s, user, (size_t)(end - user));
}

/* SCRAM client-first: gs2-header "n=" saslname ",r=" ...; saslname escapes
 * ',' as =2C and '=' as =3D. */
static void note_scram_user(struct auth_session *s, const char *in, size_t len)
{
	const char *end = in + len;
	const char *p = in;
	for (int commas = 0; p < end && commas < 2; p++)
		if (*p == ',')
			commas++;
	if (end - p < 2 || p[0] != 'n' || p[1] != '=')
		return;
	p += 2;
	char user[MAX_USER_LEN];
	size_t n = 0;
	while (p < end && *p != ',' && n < sizeof(user)) {
		if (end - p >= 3 && memcmp(p, "=2C", 3) == 0) {
			user[n++] = ',';
			p += 3;
		} else if (end - p >= 3 && memcmp(p, "=3D", 3) == 0) {
			user[n++] = '=';
			p += 3;
		} else {
			user[n++] = *p++;
		}
	}
	set_attempted(s, user, n);
}

/* The first client data of an exchange names the user for these mechs. */
static void note_client_data(struct auth_session *s, const char *in, size_t len)
{
	if (!in || s->saw_client)
		return;
	s->saw_client = true;
	if (strcasecmp(s->mech_try, "PLAIN") == 0)
		note_plain_user(s, in, len);
	else if (strcasecmp(s->mech_try, "LOGIN") == 0)
		set_attempted(s, in, strnlen(in, len));
	else if (str_case_prefix(s->mech_try, "SCRAM-"))
		note_scram_user(s, in, len);
}

static void note_sasl_user(struct auth_session *s)
{
	const void *user = NULL;
	if (!s->attempted && sasl_getprop(s->conn, SASL_USERNAME, &user) == SASL_OK && user)
		set_attempted(s, user, strlen(user));
}

/* Decodes base64 text into a fresh buffer (NULL text: no data). "" and "="
 * both stand for empty data. Returns 0 or -1 on bad base64. */
static int decode(const char *text, char **out, unsigned *outlen)
{
	*out = NULL;
	*outlen = 0;
	if (!text)
		return 0;
	size_t len = strlen(text);
	if (len > MAX_B64_LEN)
		return -1;
	size_t cap = len / 4 * 3 + 4;
	*out = xmalloc(cap);
	if (len == 0 || strcmp(text, "=") == 0) {
		(*out)[0] = '\0';
		return 0;
	}
	long n = codec_b64_decode(text, len, *out, cap, 0);
	if (n < 0) {
		/* The decoder stops at the first bad group: what came before it
		 * is decoded already. */
		explicit_bzero(*out, cap);
		free(*out);
		*out = NULL;
		*outlen = 0;
		return -1;
	}
	*outlen = (unsigned)n;
	(*out)[n] = '\0';
	return 0;
}

static void wipe_free(char *p, unsigned len)
{
	if (!p)
		return;
	explicit_bzero(p, len);
	free(p);
}

static void encode(struct buf *out, const char *data, unsigned len)
{
	unsigned max = (len + 2) / 3 * 4 + 1;
	out->len = 0;
	buf_reserve(out, max);
	out->len = codec_b64_encode(data, len, out->data);
}

static int map_result(int r)
{
	switch (r) {
	case SASL_OK:
		return AUTH_OK;
	case SASL_CONTINUE:
		return AUTH_CONTINUE;
	case SASL_FAIL:     /* generic backend failure (e.g. saslauthd down) */
	case SASL_NOMEM:
	case SASL_TRYAGAIN:
	case SASL_UNAVAIL:
	case SASL_NOTINIT:  /* ours, not the client's fault */
	case SASL_BADPARAM:
		return AUTH_TEMPFAIL;
	default:            /* BADAUTH, NOUSER, NOMECH, BADPROT, NOAUTHZ, ... */
		return AUTH_FAIL;
	}
}

static int fail(struct auth_session *s, int result, const char *why)
{
	set_error(s, why);
	s->malformed = false;
	s->active = false;
	s->final_sent = false;
	return result;
}

static int fail_malformed(struct auth_session *s)
{
	int r = fail(s, AUTH_FAIL, "bad base64");
	s->malformed = true;
	return r;
}

bool auth_malformed(struct auth_session *s)
{
	return s->malformed;
}

/* The exchange ended well, by Cyrus or by the cache: the account user
 * names is the identity from now on, under one name however it was
 * spelled. */
static int authenticated(struct auth_session *s, const char *user, const char *mech)
{
	s->username = auth_account_name(user, s->realm);
	s->mech = str_dup(mech);
	s->active = false;
	s->final_sent = false;
	s->done = true;
	return AUTH_OK;
}

/* SASL_USERNAME is the authorization id, which a client may choose
 * (PLAIN's authzid, SCRAM's a=). Cyrus's default policy already refuses
 * one that is not the authentication id byte for byte (no proxy policy
 * callback of ours says otherwise); the identity we keep must still
 * never be another account than the one whose password was checked. */
static int succeed(struct auth_session *s)
{
	const void *user = NULL, *authid = NULL, *mech = NULL;
	if (sasl_getprop(s->conn, SASL_USERNAME, &user) != SASL_OK || !user)
		return fail(s, AUTH_TEMPFAIL, "no user name after authentication");
	if (sasl_getprop(s->conn, SASL_AUTHUSER, &authid) == SASL_OK && authid &&
	    strcmp(authid, user) != 0)
		return fail(s, AUTH_FAIL, "authorization id is not the authentication id");
	if (sasl_getprop(s->conn, SASL_MECHNAME, &mech) != SASL_OK || !mech)
		mech = s->mech_try;
	return authenticated(s, user, mech);
}

static int finish(struct auth_session *s, int r, const char *out, unsigned outlen,
                  struct buf *challenge)
{
	if (r == SASL_CONTINUE) {
		encode(challenge, out, outlen);
		return AUTH_CONTINUE;
	}
	if (r == SASL_OK && outlen > 0) {
		/* RFC 4954: server-final data travels in a 334 challenge. */
		encode(challenge, out, outlen);
		s->final_sent = true;
		return AUTH_CONTINUE;
	}
	if (r == SASL_OK)
		return succeed(s);
	note_sasl_user(s);
	int result = map_result(r);
	if (result == AUTH_FAIL && sasldb_missing())
		return fail(s, AUTH_TEMPFAIL, "sasldb not readable");
	return fail(s, result, sasl_errdetail(s->conn));
}

/* ---- the exchange ----------------------------------------------------- */

/* PLAIN's data is the whole credential: Cyrus's verdict on the same
 * bytes can be remembered (only successes; see cache.h). Take the stamp
 * before Cyrus looks. */
static bool cacheable(struct auth_session *s, struct auth_cache_stamp *st)
{
	return strcasecmp(s->mech_try, "PLAIN") == 0 && auth_cache_stamp(st);
}

static void remember(struct auth_session *s, int result, bool stamped,
                     const struct auth_cache_stamp *st, const char *in, unsigned inlen)
{
	if (stamped && result == AUTH_OK && in)
		auth_cache_put(st, s->realm, in, inlen, s->username);
}

int auth_start(struct auth_session *s, const char *mech, const char *initial,
               struct buf *challenge)
{
	if (s->done) {
		/* RFC 4954 forbids a second AUTH; keep the identity we have. */
		set_error(s, "already authenticated");
		return AUTH_FAIL;
	}
	reset_attempt(s);
	if (!mech || !auth_mech_offered(s, mech))
		return fail(s, AUTH_FAIL, "mechanism not offered");
	str_lcpy(s->mech_try, mech, sizeof(s->mech_try));
	char *in;
	unsigned inlen;
	if (decode(initial, &in, &inlen) < 0)
		return fail_malformed(s);
	note_client_data(s, in, inlen);
	s->active = true;
	struct auth_cache_stamp st;
	bool stamped = in && cacheable(s, &st);
	const char *out = NULL;
	unsigned outlen = 0;
	int r = sasl_server_start(s->conn, s->mech_try, in, inlen, &out, &outlen);
	int result = finish(s, r, out, outlen, challenge);
	remember(s, result, stamped, &st, in, inlen);
	wipe_free(in, inlen);
	return result;
}

int auth_step(struct auth_session *s, const char *response, struct buf *challenge)
{
	if (!s->active)
		return fail(s, AUTH_FAIL, "no authentication in progress");
	if (!response)
		response = "";
	if (s->final_sent) {
		if (strcmp(response, "") == 0 || strcmp(response, "=") == 0)
			return succeed(s);
		return fail(s, AUTH_FAIL, "data after the final server message");
	}
	char *in;
	unsigned inlen;
	if (decode(response, &in, &inlen) < 0)
		return fail_malformed(s);
	bool first = !s->saw_client;
	note_client_data(s, in, inlen);
	struct auth_cache_stamp st;
	bool stamped = first && cacheable(s, &st);
	const char *out = NULL;
	unsigned outlen = 0;
	int r = sasl_server_step(s->conn, in, inlen, &out, &outlen);
	int result = finish(s, r, out, outlen, challenge);
	remember(s, result, stamped, &st, in, inlen);
	wipe_free(in, inlen);
	return result;
}

/* ---- the credential cache, from the event loop ------------------------ */

static bool answer_from_cache(struct auth_session *s, const char *b64)
{
	char *in;
	unsigned inlen;
	if (decode(b64, &in, &inlen) < 0 || !in)
		return false;
	char *user = auth_cache_get(s->realm, in, inlen);
	if (user) {
		str_lcpy(s->mech_try, "PLAIN", sizeof(s->mech_try));
		note_client_data(s, in, inlen);
		s->cached = true;
		authenticated(s, user, "PLAIN");
	}
	bool found = user != NULL;
	wipe_free(in, inlen);
	free(user);
	return found;
}

bool auth_start_cached(struct auth_session *s, const char *mech, const char *initial)
{
	if (!auth_cache_enabled() || s->done || !mech || strcasecmp(mech, "PLAIN") != 0 ||
	    !initial || !auth_mech_offered(s, mech))
		return false;
	/* A new exchange: nothing of an earlier failed one may name it. */
	reset_attempt(s);
	return answer_from_cache(s, initial);
}

bool auth_step_cached(struct auth_session *s, const char *response)
{
	return auth_cache_enabled() && s->active && !s->final_sent && !s->saw_client &&
	       strcasecmp(s->mech_try, "PLAIN") == 0 && response && answer_from_cache(s, response);
}

bool auth_cached(struct auth_session *s)
{
	return s->done && s->cached;
}

/* ---- results ---------------------------------------------------------- */

const char *auth_username(struct auth_session *s)
{
	return s->done ? s->username : NULL;
}

const char *auth_mech(struct auth_session *s)
{
	if (s->done)
		return s->mech;
	/* A failed exchange still names what was tried, for the log. */
	return s->mech_try[0] ? s->mech_try : NULL;
}

const char *auth_error(struct auth_session *s)
{
	return s->error[0] ? s->error : NULL;
}

const char *auth_attempted_user(struct auth_session *s)
{
	return s->attempted;
}

const char *auth_attempted_account(struct auth_session *s)
{
	return s->attempted_account;
}
