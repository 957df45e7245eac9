/*
 * account.c - one name per account. Cyrus reports the identity as the
 * client spelled it ("alice" and "alice@mx.example" are the same sasldb
 * entry), so everything keyed on the account (rate limits, lockouts, the
 * sender map, the trace store) would count one account under several
 * names. auth_account_name() is the one rule that turns a spelling into
 * the account's name; it is pure and knows no SASL.
 *
 * Ownership: auth_account_name() returns a string the caller frees.
 */
#include "auth/auth.h"

#include <stdlib.h>
#include <string.h>

static char ascii_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* Host names compare without case (RFC 4343); only ASCII folds, whatever
 * the locale. */
static bool same_host(const char *a, const char *b)
{
	for (; *a && *b; a++, b++)
		if (ascii_lower(*a) != ascii_lower(*b))
			return false;
	return *a == *b;
}

char *auth_account_name(const char *name, const char *realm)
{
	/* The first '@' splits user from realm, as Cyrus's sasldb lookup
	 * does; a name with nothing on either side of it names no entry and
	 * stays as it was. */
	const char *at = strchr(name, '@');
	if (!at || at == name || at[1] == '\0')
		return str_dup(name);
	size_t ulen = (size_t)(at - name);
	if (realm && same_host(at + 1, realm))
		return str_ndup(name, ulen);
	char *out = str_dup(name);
	for (char *p = out + ulen + 1; *p; p++)
		*p = ascii_lower(*p);
	return out;
}
