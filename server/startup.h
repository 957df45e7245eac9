/*
 * startup.h - what start-up prepares and checks before the loops run: the
 * directories the daemon user writes, made for it when we start as root;
 * whether that user can use every file it needs after the privilege drop,
 * seen through its own eyes; and the file descriptors the configured
 * number of connections needs.
 *
 * Ownership: nothing here allocates for the caller; errors are written
 * into the caller's buffer as "config file: what: reason", once.
 */
#ifndef POSTERN_STARTUP_H
#define POSTERN_STARTUP_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "conf/conf.h"

/* Who the daemon is once start-up is over. */
struct startup_user {
	char name[64];
	uid_t uid;
	gid_t gid;
	bool become;   /* we are root now and become this user later */
};

/* The user the daemon will run as: conf->user when we are root (an error
 * when it is unset or unknown), else whoever we are. */
int startup_user(const struct conf *c, struct startup_user *u, char *err, size_t errlen);

/* Started as root: makes the spool, the trace database's directory and the
 * Maildir (when mail goes there) where they are missing, owned by u with
 * modes 0700, 0750 and 0700; missing directories above them are root's,
 * 0755. Directories that exist are left as they are: the check says what
 * is wrong with them. */
int startup_make_dirs(const struct conf *c, const struct startup_user *u, char *err, size_t errlen);

/* Checks as u that it can read the sasldb and write the spool, the trace
 * database and its directory, and the Maildir. With u->become, a child
 * process becomes u and tries (access(2) as root would say yes to
 * everything); else this process tries. A directory still missing passes
 * if it can be made: by root before the drop (u->become), else by us. */
int startup_check_files(const struct conf *c, const struct startup_user *u, char *err,
                        size_t errlen);

/* What max_connections needs of RLIMIT_NOFILE: two descriptors per
 * connection (its socket and, during DATA, its spool file) plus what the
 * daemon holds besides. Raises the soft limit to the hard one; when even
 * that is too low, lowers c->max_connections to what fits and logs
 * event=fd_limit (posternd -t: on stderr). An error only when not even one
 * connection per loop would fit. */
int startup_fd_limit(struct conf *c, unsigned nloops, char *err, size_t errlen);

#endif
