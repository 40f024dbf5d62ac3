/* SPDX-License-Identifier: Apache-2.0 */
#include "worker/sniff.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#define TLS_RECORD_HANDSHAKE 0x16
#define TLS_RECORD_HDR	     5
#define TLS_RECORD_MAX	     16384
#define TLS_HS_CLIENT_HELLO  1
#define TLS_EXT_SERVER_NAME  0
#define TLS_SNI_HOST_NAME    0

enum ism_sniff ism_sniff_tls(const uint8_t *p, size_t n)
{
	if (n < 1)
		return ISM_SNIFF_MORE;
	if (p[0] != TLS_RECORD_HANDSHAKE)
		return ISM_SNIFF_PLAIN;
	if (n < 2)
		return ISM_SNIFF_MORE;
	if (p[1] != 3)
		return ISM_SNIFF_PLAIN;
	if (n < 3)
		return ISM_SNIFF_MORE;
	return p[2] <= 4 ? ISM_SNIFF_TLS : ISM_SNIFF_PLAIN;
}

/* A reader of the handshake stream, which records cut into fragments: it steps over record
 * headers, so the parser above it sees one run of bytes. off counts the handshake bytes read,
 * and every field is read against the end of the structure holding it: a field that overruns
 * its structure is -EINVAL, one that runs past the bytes received is -EAGAIN. */
struct hs_reader {
	const uint8_t *p;
	size_t n;
	size_t pos;	/* of the next byte in p */
	size_t rec_end; /* end of the current record's payload in p (may lie past n) */
	size_t off;	/* handshake bytes read */
};

static int next_record(struct hs_reader *r)
{
	const uint8_t *h = r->p + r->pos;
	size_t avail = r->n - r->pos, len;

	switch (ism_sniff_tls(h, avail < TLS_RECORD_HDR ? avail : TLS_RECORD_HDR)) {
	case ISM_SNIFF_PLAIN:
		return -EINVAL;
	case ISM_SNIFF_MORE:
		return -EAGAIN;
	case ISM_SNIFF_TLS:
		break;
	}
	if (avail < TLS_RECORD_HDR)
		return -EAGAIN;
	len = (size_t)h[3] << 8 | h[4];
	if (len == 0 || len > TLS_RECORD_MAX || r->pos + TLS_RECORD_HDR + len > ISM_SNIFF_MAX_BYTES)
		return -EINVAL;
	r->pos += TLS_RECORD_HDR;
	r->rec_end = r->pos + len;
	return 0;
}

/* Reads len bytes of the structure ending at end into dst (NULL: skips them). */
static int rd(struct hs_reader *r, size_t len, size_t end, uint8_t *dst)
{
	if (len > end - r->off)
		return -EINVAL;
	while (len > 0) {
		size_t avail, take;
		int rc;

		if (r->pos == r->rec_end && (rc = next_record(r)) < 0)
			return rc;
		avail = (r->rec_end < r->n ? r->rec_end : r->n) - r->pos;
		if (avail == 0)
			return -EAGAIN;
		take = len < avail ? len : avail;
		if (dst) {
			memcpy(dst, r->p + r->pos, take);
			dst += take;
		}
		r->pos += take;
		r->off += take;
		len -= take;
	}
	return 0;
}

/* A big-endian number of width (1..3) bytes. */
static int rd_uint(struct hs_reader *r, size_t width, size_t end, size_t *v)
{
	uint8_t b[3];
	size_t i;
	int rc = rd(r, width, end, b);

	if (rc < 0)
		return rc;
	for (*v = 0, i = 0; i < width; i++)
		*v = *v << 8 | b[i];
	return 0;
}

/* A length prefix of width bytes; its vector must fit in the structure ending at end. */
static int rd_vec(struct hs_reader *r, size_t width, size_t end, size_t *len)
{
	int rc = rd_uint(r, width, end, len);

	if (rc < 0)
		return rc;
	return *len > end - r->off ? -EINVAL : 0;
}

/* A length prefix whose vector must fill the structure, up to end (a list). */
static int rd_list(struct hs_reader *r, size_t width, size_t end)
{
	size_t len;
	int rc = rd_vec(r, width, end, &len);

	if (rc < 0)
		return rc;
	return r->off + len == end ? 0 : -EINVAL;
}

/* An entry of a list: a type of type_width bytes, then a value with a 2-byte length prefix. */
static int rd_entry(struct hs_reader *r, size_t type_width, size_t end, size_t *type, size_t *len)
{
	int rc = rd_uint(r, type_width, end, type);

	return rc < 0 ? rc : rd_vec(r, 2, end, len);
}

struct sni {
	uint8_t name[ISM_SNI_MAX];
	size_t len; /* 0: none seen */
	bool ext_seen;
};

/* The server_name extension (RFC 6066): a list, ending with the extension, of (type, name). */
static int parse_server_name(struct hs_reader *r, size_t end, struct sni *s)
{
	size_t type, len, i;
	int rc;

	if (s->ext_seen)
		return -EINVAL;
	s->ext_seen = true;
	if ((rc = rd_list(r, 2, end)) < 0)
		return rc;
	while (r->off < end) {
		if ((rc = rd_entry(r, 1, end, &type, &len)) < 0)
			return rc;
		if (type != TLS_SNI_HOST_NAME) {
			if ((rc = rd(r, len, end, NULL)) < 0)
				return rc;
			continue;
		}
		if (s->len || len == 0 || len > ISM_SNI_MAX)
			return -EINVAL;
		/* byte by byte, so that a bad one is refused as soon as it is there */
		for (i = 0; i < len; i++) {
			if ((rc = rd(r, 1, end, s->name + i)) < 0)
				return rc;
			if (!ism_sni_byte_ok(s->name[i]))
				return -EINVAL;
		}
		s->len = len;
	}
	return 0;
}

/* Skips a vector with a length prefix of width bytes, of min..max bytes in whole units. */
static int skip_vec(struct hs_reader *r, size_t width, size_t end, size_t min, size_t max,
		    size_t unit)
{
	size_t len;
	int rc = rd_vec(r, width, end, &len);

	if (rc < 0)
		return rc;
	if (len < min || len > max || len % unit)
		return -EINVAL;
	return rd(r, len, end, NULL);
}

/* The ClientHello body (RFC 8446 4.1.2, RFC 5246 7.4.1.2), up to its end. */
static int parse_client_hello(struct hs_reader *r, size_t end, struct sni *s)
{
	size_t len, type;
	int rc;

	/* legacy_version and random, legacy_session_id, cipher_suites, compression_methods */
	if ((rc = rd(r, 2 + 32, end, NULL)) < 0 || (rc = skip_vec(r, 1, end, 0, 32, 1)) < 0 ||
	    (rc = skip_vec(r, 2, end, 2, 0xFFFE, 2)) < 0 ||
	    (rc = skip_vec(r, 1, end, 1, 0xFF, 1)) < 0)
		return rc;
	if (r->off == end) /* no extensions (TLS 1.2 and older may omit them) */
		return 0;
	if ((rc = rd_list(r, 2, end)) < 0)
		return rc;
	while (r->off < end) {
		if ((rc = rd_entry(r, 2, end, &type, &len)) < 0)
			return rc;
		if (type == TLS_EXT_SERVER_NAME)
			rc = parse_server_name(r, r->off + len, s);
		else
			rc = rd(r, len, end, NULL);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int ism_sniff_sni(const uint8_t *p, size_t n, char *out, size_t outsz)
{
	struct hs_reader r = {.p = p, .n = n};
	struct sni s = {.len = 0};
	size_t type, len, i;
	int rc;

	if (outsz > 0)
		out[0] = '\0';
	if ((rc = rd_uint(&r, 1, ISM_SNIFF_MAX_BYTES, &type)) < 0)
		return rc;
	if (type != TLS_HS_CLIENT_HELLO)
		return -EINVAL;
	if ((rc = rd_uint(&r, 3, ISM_SNIFF_MAX_BYTES, &len)) < 0)
		return rc;
	/* the shortest a hello of this length can be: in one record */
	if (TLS_RECORD_HDR + r.off + len > ISM_SNIFF_MAX_BYTES)
		return -EINVAL;
	if ((rc = parse_client_hello(&r, r.off + len, &s)) < 0)
		return rc;
	if (s.len == 0)
		return 0;
	if (s.len >= outsz)
		return -ENOSPC;
	for (i = 0; i < s.len; i++)
		out[i] = (char)(s.name[i] >= 'A' && s.name[i] <= 'Z' ? s.name[i] + 32 : s.name[i]);
	out[s.len] = '\0';
	return (int)s.len;
}
