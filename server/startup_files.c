/*
 * startup_files.c - the daemon user's files at start-up. Started as root,
 * posternd binds and reads its keys, then becomes `user`; after that it
 * must still read the sasldb and write the spool, the trace database and
 * the Maildir. Directories that do not exist yet are made here, as root,
 * owned by that user (root's directories above them stay root's); then
 * a child that has become the user tries every file, so that `posternd -t`
 * and the start both fail with the file and the reason instead of a 454 at
 * every login or a spool error after the drop.
 *
 * Ownership: nothing allocated outlives a call.
 */
#include "server/startup.h"
#include "common/common.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SPOOL_MODE 0700
#define TRACE_DIR_MODE 0750   /* the operators' group reads trace.db */
#define MAILDIR_MODE 0700
#define PARENT_MODE 0755

/* The spool's own subdirectories, made by the daemon as the user. */
static const char *const spool_subdirs[] = { "tmp", "queue", "state", "hold" };
static const char *const maildir_subdirs[] = { "tmp", "new", "cur" };

int startup_user(const struct conf *c, struct startup_user *u, char *err, size_t errlen)
{
	memset(u, 0, sizeof(*u));
	if (geteuid() != 0 && getuid() != 0) {
		u->uid = geteuid();
		u->gid = getegid();
		struct passwd *pw = getpwuid(u->uid);
		if (pw)
			str_lcpy(u->name, pw->pw_name, sizeof(u->name));
		else
			snprintf(u->name, sizeof(u->name), "uid %u", (unsigned)u->uid);
		return 0;
	}
	if (!c->user) {
		snprintf(err, errlen, "%s: running as root: set user = \"...\" to an unprivileged account",
		         c->path);
		return -1;
	}
	struct passwd *pw = getpwnam(c->user);
	if (!pw) {
		snprintf(err, errlen, "%s: user %s: no such user", c->path, c->user);
		return -1;
	}
	if (pw->pw_uid == 0) {
		snprintf(err, errlen, "%s: user %s: that is root; name an unprivileged account",
		         c->path, c->user);
		return -1;
	}
	if (str_lcpy(u->name, pw->pw_name, sizeof(u->name)) >= sizeof(u->name)) {
		snprintf(err, errlen, "%s: user %s: name too long", c->path, c->user);
		return -1;
	}
	u->uid = pw->pw_uid;
	u->gid = pw->pw_gid;
	u->become = true;
	return 0;
}

/* ---- making directories as root ------------------------------------------------ */

/* mkdir, then fchown/fchmod through a descriptor of what we made (not by
 * name: a name can be swapped for a symlink between the calls). */
static int make_one(const char *path, mode_t mode, uid_t uid, gid_t gid)
{
	if (mkdir(path, 0700) < 0)
		return errno == EEXIST ? 1 : -errno;
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = 0;
	if (fchown(fd, uid, gid) < 0 || fchmod(fd, mode) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

static int make_dir_for(const char *conf_path, const char *what, const char *dir, mode_t mode,
                        const struct startup_user *u, char *err, size_t errlen)
{
	char tmp[PATH_MAX];
	if (str_lcpy(tmp, dir, sizeof(tmp)) >= sizeof(tmp)) {
		snprintf(err, errlen, "%s: %s: %s: name too long", conf_path, what, dir);
		return -1;
	}
	size_t len = strlen(tmp);
	while (len > 1 && tmp[len - 1] == '/')
		tmp[--len] = '\0';
	for (char *p = tmp + 1;; p++) {
		bool last = *p == '\0';
		if (!last && *p != '/')
			continue;
		*p = '\0';
		int rc = last ? make_one(tmp, mode, u->uid, u->gid) : make_one(tmp, PARENT_MODE, 0, 0);
		if (rc < 0) {
			snprintf(err, errlen, "%s: %s: cannot make %s: %s", conf_path, what, tmp,
			         strerror(-rc));
			return -1;
		}
		if (rc == 0)
			log_info("event=dir_created dir=%s owner=%s mode=%04o", log_q(tmp),
			         log_q(last ? u->name : "root"), (unsigned)(last ? mode : PARENT_MODE));
		if (last)
			return 0;
		*p = '/';
	}
}

static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		return str_dup(".");
	if (slash == path)
		return str_dup("/");
	return str_ndup(path, (size_t)(slash - path));
}

int startup_make_dirs(const struct conf *c, const struct startup_user *u, char *err, size_t errlen)
{
	if (!u->become)
		return 0;
	if (make_dir_for(c->path, "spool { directory }", c->spool_dir, SPOOL_MODE, u, err,
	                 errlen) < 0)
		return -1;
	if (c->trace_enabled) {
		char *dir = dir_of(c->trace_db);
		int rc = make_dir_for(c->path, "trace { db }", dir, TRACE_DIR_MODE, u, err, errlen);
		free(dir);
		if (rc < 0)
			return -1;
	}
	if (!c->relay_downstream &&
	    make_dir_for(c->path, "relay { maildir }", c->relay_maildir, MAILDIR_MODE, u, err,
	                 errlen) < 0)
		return -1;
	return 0;
}

/* ---- trying, as the user ------------------------------------------------------- */

struct try {
	const char *conf_path;
	const char *user;
	bool root_makes;  /* a missing directory is made before the drop */
	char *err;
	size_t errlen;
};

static int try_fail(struct try *t, const char *what, const char *verb, const char *path, int e)
{
	snprintf(t->err, t->errlen, "%s: %s: user %s cannot %s %s: %s", t->conf_path, what, t->user,
	         verb, path, strerror(e));
	return -1;
}

static int try_read(struct try *t, const char *what, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return try_fail(t, what, "read", path, errno);
	close(fd);
	return 0;
}

/* An existing file the daemon opens read-write (the database, its -wal
 * and -shm); a missing one is made in its directory, tried apart. */
static int try_write_file(struct try *t, const char *what, const char *path)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0 && errno != ENOENT)
		return try_fail(t, what, "write", path, errno);
	if (fd >= 0)
		close(fd);
	return 0;
}

/* Making a file is the test: access(2) misses read-only mounts' cousins
 * (immutable directories, full disks, quotas) and says nothing of them. */
static int try_create_in(struct try *t, const char *what, const char *dir)
{
	char probe[PATH_MAX];
	if ((size_t)snprintf(probe, sizeof(probe), "%s/.postern-probe-XXXXXX", dir) >=
	    sizeof(probe))
		return try_fail(t, what, "write", dir, ENAMETOOLONG);
	int fd = mkostemp(probe, O_CLOEXEC);
	if (fd < 0)
		return try_fail(t, what, "write", dir, errno);
	close(fd);
	unlink(probe);
	return 0;
}

/* A directory the daemon writes. When it does not exist yet, the nearest
 * directory above it that does must let us in (root makes the rest for
 * us) or let us make it (we make it ourselves). */
static int try_dir(struct try *t, const char *what, const char *dir)
{
	struct stat st;
	if (stat(dir, &st) == 0) {
		if (!S_ISDIR(st.st_mode))
			return try_fail(t, what, "use", dir, ENOTDIR);
		return try_create_in(t, what, dir);
	}
	if (errno != ENOENT && errno != EACCES)
		return try_fail(t, what, "use", dir, errno);
	char *up = str_dup(dir);
	int rc = 0;
	for (;;) {
		char *parent = dir_of(up);
		free(up);
		up = parent;
		if (stat(up, &st) == 0)
			break;
		if (strcmp(up, "/") == 0 || strcmp(up, ".") == 0) {
			rc = try_fail(t, what, "reach", dir, errno);
			break;
		}
	}
	if (rc == 0) {
		if (!S_ISDIR(st.st_mode))
			rc = try_fail(t, what, "use", up, ENOTDIR);
		else if (t->root_makes && access(up, X_OK) < 0)
			rc = try_fail(t, what, "enter", up, errno);
		else if (!t->root_makes)
			rc = try_create_in(t, what, up);
	}
	free(up);
	return rc;
}

static int try_subdirs(struct try *t, const char *what, const char *dir,
                       const char *const *subs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char sub[PATH_MAX];
		struct stat st;
		snprintf(sub, sizeof(sub), "%s/%s", dir, subs[i]);
		/* Missing ones the daemon makes in dir, which was tried. */
		if (stat(sub, &st) == 0 && try_dir(t, what, sub) < 0)
			return -1;
	}
	return 0;
}

static int try_all(const struct conf *c, struct try *t)
{
	if (c->sasl_sasldb && try_read(t, "sasl { sasldb }", c->sasl_sasldb) < 0)
		return -1;
	if (try_dir(t, "spool { directory }", c->spool_dir) < 0 ||
	    try_subdirs(t, "spool { directory }", c->spool_dir, spool_subdirs,
	                ARRAY_LEN(spool_subdirs)) < 0)
		return -1;
	if (c->trace_enabled) {
		char *dir = dir_of(c->trace_db);
		int rc = try_dir(t, "trace { db }", dir);
		free(dir);
		static const char *const suffixes[] = { "", "-wal", "-shm" };
		for (size_t i = 0; i < ARRAY_LEN(suffixes) && rc == 0; i++) {
			char file[PATH_MAX];
			snprintf(file, sizeof(file), "%s%s", c->trace_db, suffixes[i]);
			rc = try_write_file(t, "trace { db }", file);
		}
		if (rc < 0)
			return -1;
	}
	if (!c->relay_downstream &&
	    (try_dir(t, "relay { maildir }", c->relay_maildir) < 0 ||
	     try_subdirs(t, "relay { maildir }", c->relay_maildir, maildir_subdirs,
	                 ARRAY_LEN(maildir_subdirs)) < 0))
		return -1;
	return 0;
}

/* The child becomes u and tries; its verdict comes back through a pipe.
 * We are single-threaded here (no loop, relay or spool thread yet), so
 * the child may do anything the parent could. */
static int try_as(const struct conf *c, const struct startup_user *u, char *err, size_t errlen)
{
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) < 0) {
		snprintf(err, errlen, "%s: checking files as user %s: pipe: %s", c->path, u->name,
		         strerror(errno));
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(err, errlen, "%s: checking files as user %s: fork: %s", c->path, u->name,
		         strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	if (pid == 0) {
		close(fds[0]);
		char msg[1024] = "";
		int rc = -1;
		if (initgroups(u->name, u->gid) < 0 || setgid(u->gid) < 0 || setuid(u->uid) < 0) {
			snprintf(msg, sizeof(msg), "%s: cannot become user %s: %s", c->path, u->name,
			         strerror(errno));
		} else {
			struct try t = { c->path, u->name, true, msg, sizeof(msg) };
			rc = try_all(c, &t);
		}
		if (rc < 0)
			(void)!write(fds[1], msg, strlen(msg));
		_exit(rc < 0 ? 1 : 0);  /* no atexit work (and no leak check) in the copy */
	}
	close(fds[1]);
	size_t got = 0;
	while (got + 1 < errlen) {
		ssize_t n = read(fds[0], err + got, errlen - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	if (errlen)
		err[got] = '\0';
	close(fds[0]);
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (got == 0)
		snprintf(err, errlen, "%s: checking files as user %s: the check died (status %d)",
		         c->path, u->name, status);
	return -1;
}

int startup_check_files(const struct conf *c, const struct startup_user *u, char *err,
                        size_t errlen)
{
	if (u->become)
		return try_as(c, u, err, errlen);
	struct try t = { c->path, u->name, false, err, errlen };
	return try_all(c, &t);
}
