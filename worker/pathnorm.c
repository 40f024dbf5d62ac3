/* SPDX-License-Identifier: Apache-2.0 */
/* Request-path normalisation (worker/pathnorm.h).
 *
 * Envoy runs three passes over a copy of the path: the textual decoding of %2F/%5C (when
 * path_with_escaped_slashes_action is UNESCAPE_AND_FORWARD), Chromium's CanonicalizePath
 * (normalize_path), then its merge of slashes (merge_slashes). Here the first two are one pass
 * over "tokens" (a byte, or a "%HH" triple, with what it stands for): decoding %2F before
 * canonicalising is the same as canonicalising with "%2F" read as a slash, because '/' and '\'
 * are neither '%' nor hex digits: decoding them cannot make or unmake another escape. The merge
 * stays a pass of its own, after the dot segments, since merging first would change what ".."
 * removes ("/a//.." is "/a/" in Envoy).
 *
 * A first pass validates and counts the bytes to percent-encode, so that nothing is written
 * when the path is refused or the buffer too small, and so that the in-place case can move the
 * input to where the writes can never overtake the reads. */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "lib/ascii.h"
#include "lib/log.h"
#include "worker/pathnorm.h"

/* What a raw input byte is. ENCODE is Chromium's ESCAPE set for paths (url_canon_path.cc's
 * kPathCharLookup), NUL its INVALID entry in the copy Envoy carried. The classes before R_PCT
 * are those the prescan has nothing to do for. */
enum { R_PLAIN = 0, R_SLASH, R_BSLASH, R_DOT, R_PCT, R_ENCODE, R_NUL };

/* clang-format off */
static const uint8_t raw_class[256] = {
	[0x00] = R_NUL,
	[0x01 ... 0x20] = R_ENCODE,
	['"'] = R_ENCODE, ['#'] = R_ENCODE, ['%'] = R_PCT, ['.'] = R_DOT, ['/'] = R_SLASH,
	['<'] = R_ENCODE, ['>'] = R_ENCODE, ['?'] = R_ENCODE, ['\\'] = R_BSLASH,
	['^'] = R_ENCODE, ['`'] = R_ENCODE, ['{'] = R_ENCODE, ['|'] = R_ENCODE, ['}'] = R_ENCODE,
	[0x7f ... 0xff] = R_ENCODE,
};
/* clang-format on */

enum tok_kind {
	T_BAD,	  /* refused: NUL, "%00", '%' without two hex digits */
	T_COPY,	  /* c goes out as is: a plain byte or a decoded unreserved one */
	T_DOT,	  /* '.' or "%2E" */
	T_SLASH,  /* '/', '\', and "%2F"/"%5C" when decoding slashes */
	T_KEEP,	  /* a valid escape that stays: its three bytes go out unchanged */
	T_ENCODE, /* c goes out as "%HH" */
};

struct tok {
	uint8_t kind;
	unsigned char c;
	uint8_t n; /* input bytes */
};

/* RFC 3986 unreserved, the dot excepted (a token of its own). */
static bool unreserved(unsigned char c)
{
	unsigned char l = c | 0x20;

	return (l >= 'a' && l <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '~';
}

static struct tok tok_at(const char *in, size_t len, size_t i, bool dec_slashes)
{
	const unsigned char c = (unsigned char)in[i];
	int hi, lo;

	switch (raw_class[c]) {
	case R_PLAIN:
		return (struct tok){T_COPY, c, 1};
	case R_ENCODE:
		return (struct tok){T_ENCODE, c, 1};
	case R_SLASH:
	case R_BSLASH:
		return (struct tok){T_SLASH, '/', 1};
	case R_DOT:
		return (struct tok){T_DOT, '.', 1};
	case R_NUL:
		return (struct tok){T_BAD, 0, 1};
	default: /* R_PCT */
		break;
	}
	if (len - i < 3 || (hi = ism_hexval((unsigned char)in[i + 1])) < 0 ||
	    (lo = ism_hexval((unsigned char)in[i + 2])) < 0)
		return (struct tok){T_BAD, 0, 1};
	const unsigned char v = (unsigned char)(hi << 4 | lo);
	if (v == 0)
		return (struct tok){T_BAD, 0, 3};
	if (v == '.')
		return (struct tok){T_DOT, '.', 3};
	if (unreserved(v))
		return (struct tok){T_COPY, v, 3};
	if (dec_slashes && (v == '/' || v == '\\'))
		return (struct tok){T_SLASH, '/', 3};
	return (struct tok){T_KEEP, '%', 3};
}

/* The number of bytes to percent-encode, or -EINVAL when the path is refused. */
static ssize_t prescan(const char *in, size_t len, bool dec_slashes)
{
	ssize_t k = 0;

	for (size_t i = 0; i < len;) {
		struct tok t;

		if (raw_class[(unsigned char)in[i]] < R_PCT) {
			i++;
			continue;
		}
		t = tok_at(in, len, i, dec_slashes);
		if (t.kind == T_BAD)
			return -EINVAL;
		k += t.kind == T_ENCODE;
		i += t.n;
	}
	return k;
}

enum dot_kind { DOT_NAME, DOT_CUR, DOT_UP };

/* Chromium's ClassifyAfterDot: what the dot token at i (n bytes) starts, and in *used how many
 * input bytes the dot segment takes, its final slash included. */
static enum dot_kind classify_dot(const char *in, size_t len, size_t i, size_t n, bool dec,
				  size_t *used)
{
	size_t j = i + n;
	struct tok t;

	*used = n;
	if (j == len)
		return DOT_CUR;
	t = tok_at(in, len, j, dec);
	if (t.kind == T_SLASH) {
		*used += t.n;
		return DOT_CUR;
	}
	if (t.kind != T_DOT)
		return DOT_NAME;
	j += t.n;
	*used += t.n;
	if (j == len)
		return DOT_UP;
	t = tok_at(in, len, j, dec);
	if (t.kind != T_SLASH)
		return DOT_NAME;
	*used += t.n;
	return DOT_UP;
}

/* Removes the last segment of out[0..*w), which ends with '/', keeping the slash before it;
 * the root stays. */
static void back_up(const char *out, size_t *w)
{
	size_t i = *w - 1;

	if (i == 0)
		return;
	do
		i--;
	while (i > 0 && out[i] != '/');
	*w = i + 1;
}

/* Decodes, resolves dot segments, turns backslashes into slashes and encodes, from the
 * prescanned in[0..len) into out. In place, out + 2k == in with k the bytes to encode: each
 * token is read before its output is written, and the output up to a token never passes it. */
static size_t canonicalize(const char *in, size_t len, char *out, bool dec)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i = 0, w = 0, used;

	while (i < len) {
		struct tok t;

		/* Most bytes are plain or slashes: no call for them. */
		if (raw_class[(unsigned char)in[i]] == R_PLAIN || in[i] == '/') {
			out[w++] = in[i++];
			continue;
		}
		t = tok_at(in, len, i, dec);
		switch ((enum tok_kind)t.kind) {
		case T_DOT:
			/* A dot only starts a dot segment right after a slash. */
			switch (w > 0 && out[w - 1] == '/'
				    ? classify_dot(in, len, i, t.n, dec, &used)
				    : DOT_NAME) {
			case DOT_NAME:
				out[w++] = '.';
				break;
			case DOT_CUR:
				t.n = (uint8_t)used;
				break;
			case DOT_UP:
				back_up(out, &w);
				t.n = (uint8_t)used;
				break;
			}
			break;
		case T_SLASH:
		case T_COPY:
			out[w++] = (char)t.c;
			break;
		case T_KEEP:
			/* Forward, byte by byte: in place, w <= i. */
			out[w] = in[i];
			out[w + 1] = in[i + 1];
			out[w + 2] = in[i + 2];
			w += 3;
			break;
		case T_ENCODE:
			out[w++] = '%';
			out[w++] = hex[t.c >> 4];
			out[w++] = hex[t.c & 15];
			break;
		default:
			ISM_BUG_ON(1); /* T_BAD: prescan refused it */
		}
		i += t.n;
	}
	return w;
}

/* p[0..n) starts with '/'; nothing moves before its first "//". */
static size_t merge_slashes(char *p, size_t n)
{
	size_t i = 1, w;

	while (i < n && !(p[i] == '/' && p[i - 1] == '/'))
		i++;
	for (w = i; i < n; i++)
		if (!(p[i] == '/' && p[w - 1] == '/'))
			p[w++] = p[i];
	return w;
}

ssize_t ism_pathnorm(enum ism_pathnorm_mode mode, const char *in, size_t len, char *out, size_t cap)
{
	const char *src = in;
	bool dec = false;
	ssize_t k;
	size_t n;

	switch (mode) {
	case ISM_PATHNORM_NONE:
		if (cap < len)
			return -ENOSPC;
		if (out != in && len > 0)
			memcpy(out, in, len);
		return (ssize_t)len;
	case ISM_PATHNORM_DECODE_AND_MERGE_SLASHES:
		dec = true;
		break;
	case ISM_PATHNORM_BASE:
	case ISM_PATHNORM_MERGE_SLASHES:
		break;
	default:
		return -EINVAL;
	}
	/* Chromium would prepend a slash; the caller guarantees one, so anything else is refused
	 * rather than growing the output by one. */
	if (len == 0 || len > (size_t)SSIZE_MAX / 3 ||
	    (raw_class[(unsigned char)in[0]] != R_SLASH &&
	     raw_class[(unsigned char)in[0]] != R_BSLASH))
		return -EINVAL;
	k = prescan(in, len, dec);
	if (k < 0)
		return k;
	if (cap < len + 2 * (size_t)k)
		return -ENOSPC;
	if (out == in && k > 0) {
		memmove(out + 2 * k, in, len);
		src = out + 2 * k;
	}
	n = canonicalize(src, len, out, dec);
	if (mode != ISM_PATHNORM_BASE)
		n = merge_slashes(out, n);
	return (ssize_t)n;
}

/* A "." or ".." segment starts at p[0..n) (p[0] is the character after a slash). Only '/' can
 * end it here: the caller's scan refuses '\' and '%' on their own. */
static bool dot_segment(const char *p, size_t n)
{
	return p[0] == '.' && (n == 1 || p[1] == '/' || (p[1] == '.' && (n == 2 || p[2] == '/')));
}

bool ism_pathnorm_is_normal(enum ism_pathnorm_mode mode, const char *in, size_t len)
{
	bool merge;

	switch (mode) {
	case ISM_PATHNORM_NONE:
		return true;
	case ISM_PATHNORM_BASE:
		merge = false;
		break;
	case ISM_PATHNORM_MERGE_SLASHES:
	case ISM_PATHNORM_DECODE_AND_MERGE_SLASHES:
		merge = true;
		break;
	default:
		return false;
	}
	if (len == 0 || in[0] != '/')
		return false;
	for (size_t i = 0; i < len; i++) {
		const unsigned char c = (unsigned char)in[i];

		if (raw_class[c] == R_PLAIN || c == '.')
			continue;
		if (c != '/')
			return false;
		if (i + 1 == len)
			break;
		if ((merge && in[i + 1] == '/') || dot_segment(in + i + 1, len - i - 1))
			return false;
	}
	return true;
}
