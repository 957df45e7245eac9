/*
 * codec.c - the one hex, base64 and UTF-8 codec of the tree. Everything
 * writes into the caller's buffer; nothing is allocated.
 */
#include "common/common.h"

#include <string.h>

static const char hex_digits[] = "0123456789abcdef";

char codec_hexdigit(unsigned v)
{
	return hex_digits[v & 15];
}

void codec_hex(const void *in, size_t n, char *out)
{
	const unsigned char *p = in;
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hex_digits[p[i] >> 4];
		out[2 * i + 1] = hex_digits[p[i] & 15];
	}
	out[2 * n] = '\0';
}

int codec_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int codec_b64val(int c, bool url_too)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || (url_too && c == '-'))
		return 62;
	if (c == '/' || (url_too && c == '_'))
		return 63;
	return -1;
}

size_t codec_b64_encode(const void *in, size_t n, char *out)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *p = in;
	size_t o = 0;
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned)p[i] << 16;
		if (i + 1 < n)
			v |= (unsigned)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		out[o++] = alphabet[(v >> 18) & 63];
		out[o++] = alphabet[(v >> 12) & 63];
		out[o++] = i + 1 < n ? alphabet[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < n ? alphabet[v & 63] : '=';
	}
	out[o] = '\0';
	return o;
}

long codec_b64_decode(const char *s, size_t n, void *outp, size_t max, unsigned flags)
{
	unsigned char *out = outp;
	bool lenient = flags & CODEC_B64_LENIENT;
	unsigned acc = 0;
	int bits = 0;
	size_t o = 0, pad = 0, used = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '=') {
			if (lenient)
				break;   /* RFC 2045 6.8: '=' ends the data */
			pad++;
			continue;
		}
		int v = codec_b64val(c, flags & CODEC_B64_URL);
		if (v < 0 || pad) {
			if (lenient && v < 0)
				continue;   /* receivers skip what is not base64 */
			return -1;
		}
		used++;
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o == max)
				return -1;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
	if (!lenient) {
		/* Strict: whole groups, padding only to complete the last, or no
		 * padding at all with the trailing bits zero. */
		if (pad > 2 || (pad && (used + pad) % 4) || (used % 4 == 1) ||
		    (bits && (acc & ((1u << bits) - 1))))
			return -1;
	}
	return (long)o;
}

size_t codec_utf8_len(const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	unsigned char c = s[0];
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		return (s[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		unsigned char lo = c == 0xe0 ? 0xa0 : 0x80;
		unsigned char hi = c == 0xed ? 0x9f : 0xbf;
		return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 ? 3 : 0;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		unsigned char lo = c == 0xf0 ? 0x90 : 0x80;
		unsigned char hi = c == 0xf4 ? 0x8f : 0xbf;
		return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 && (s[3] & 0xc0) == 0x80
		               ? 4 : 0;
	}
	return 0;
}

bool codec_utf8_valid(const char *s)
{
	while (*s) {
		size_t n = codec_utf8_len(s);
		if (n == 0)
			return false;
		s += n;
	}
	return true;
}
