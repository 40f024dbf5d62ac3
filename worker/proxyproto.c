/* SPDX-License-Identifier: Apache-2.0 */
#include "worker/proxyproto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "lib/addr.h"

static uint32_t be16(const uint8_t *p)
{
	return (uint32_t)p[0] << 8 | p[1];
}

static uint32_t be32(const uint8_t *p)
{
	return be16(p) << 16 | be16(p + 2);
}

/* ---- v1: "PROXY TCP4|TCP6 src dst sport dport\r\n" or "PROXY UNKNOWN ...\r\n" ---- */

#define V1_SIG_LEN  6  /* "PROXY " */
#define V1_TCP_LEN  11 /* "PROXY TCP4 " */
#define V1_N_FIELDS 4

struct span {
	const uint8_t *s;
	size_t len;
};

/* Ports: decimal, 0..65535, no sign, no leading zero (the spec forbids them, as octal would
 * be a possible reading). */
static int v1_port(struct span f, in_port_t *port)
{
	uint32_t v = 0;
	size_t i;

	if (f.len == 0 || f.len > 5 || (f.len > 1 && f.s[0] == '0'))
		return -1;
	for (i = 0; i < f.len; i++) {
		if (f.s[i] < '0' || f.s[i] > '9')
			return -1;
		v = v * 10 + (uint32_t)(f.s[i] - '0');
	}
	if (v > 65535)
		return -1;
	*port = htons((uint16_t)v);
	return 0;
}

/* inet_pton wants a C string: a NUL in the field would hide what follows it, so only the
 * characters of the two text forms get that far. glibc's inet_pton is strict (no leading
 * zeros in IPv4, no zone index, no brackets). */
static int v1_addr(struct span f, int af, void *addr)
{
	char buf[INET6_ADDRSTRLEN];
	size_t i;

	if (f.len == 0 || f.len >= sizeof(buf))
		return -1;
	for (i = 0; i < f.len; i++) {
		uint8_t c = f.s[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
		      c == '.' || c == ':'))
			return -1;
		buf[i] = (char)c;
	}
	buf[f.len] = '\0';
	return inet_pton(af, buf, addr) == 1 ? 0 : -1;
}

/* Exactly V1_N_FIELDS non-empty fields separated by single spaces. */
static int v1_split(const uint8_t *s, size_t len, struct span *f)
{
	size_t i, start = 0;
	int k = 0;

	for (i = 0; i <= len; i++) {
		if (i < len && s[i] != ' ')
			continue;
		if (i == start || k == V1_N_FIELDS)
			return -1;
		f[k].s = s + start;
		f[k].len = i - start;
		k++;
		start = i + 1;
	}
	return k == V1_N_FIELDS ? 0 : -1;
}

/* Fills ss from an address of family af (4 or 16 bytes) and a port, both in network order;
 * returns its length. */
static socklen_t sockaddr_set(struct sockaddr_storage *ss, int af, const void *addr,
			      const void *port)
{
	if (af == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, addr, 4);
		memcpy(&sin->sin_port, port, 2);
		return sizeof(*sin);
	}
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	sin6->sin6_family = AF_INET6;
	memcpy(&sin6->sin6_addr, addr, 16);
	memcpy(&sin6->sin6_port, port, 2);
	return sizeof(*sin6);
}

static int v1_tcp(const uint8_t *s, size_t len, int af, struct ism_pp *out)
{
	struct span f[V1_N_FIELDS];
	uint8_t src[16], dst[16];
	in_port_t sport, dport;

	if (v1_split(s, len, f) < 0 || v1_port(f[2], &sport) < 0 || v1_port(f[3], &dport) < 0 ||
	    v1_addr(f[0], af, src) < 0 || v1_addr(f[1], af, dst) < 0)
		return -1;
	sockaddr_set(&out->src, af, src, &sport);
	out->addrlen = sockaddr_set(&out->dst, af, dst, &dport);
	out->transport = SOCK_STREAM;
	return 0;
}

/* A whole line p[0..len), CRLF excluded (the caller found it; p holds no CR). */
static int v1_line(const uint8_t *p, size_t len, struct ism_pp *out)
{
	if (len + 2 > ISM_PP_V1_MAX || len < V1_SIG_LEN || memcmp(p, "PROXY ", V1_SIG_LEN) != 0)
		return -1;
	out->version = 1;
	p += V1_SIG_LEN;
	len -= V1_SIG_LEN;
	if (len >= 7 && memcmp(p, "UNKNOWN", 7) == 0) {
		/* the receiver ignores the rest; only a space may separate it */
		if ((len > 7 && p[7] != ' ') || memchr(p, '\n', len))
			return -1;
		out->local = 1;
		return 0;
	}
	if (len < 5 || memcmp(p, "TCP", 3) != 0 || (p[3] != '4' && p[3] != '6') || p[4] != ' ')
		return -1;
	return v1_tcp(p + 5, len - 5, p[3] == '4' ? AF_INET : AF_INET6, out);
}

/* Appends s to buf[*len..cap); false when it does not fit. */
static bool append(uint8_t *buf, size_t *len, size_t cap, const char *s)
{
	size_t n = strlen(s);

	if (n > cap - *len)
		return false;
	memcpy(buf + *len, s, n);
	*len += n;
	return true;
}

/* The shortest ending that turns the text after the last ':' of a field into a dotted quad:
 * "1.2" -> ".0", "1." -> "0.0", "" -> "0.0.0.0"; "" when it has more than 3 dots (no
 * ending helps then, and the candidate is rejected with the field). */
static void v4_tail(const uint8_t *s, size_t len, char *tail)
{
	size_t i, start = 0, dots = 0;

	for (i = 0; i < len; i++)
		if (s[i] == ':')
			start = i + 1;
	for (i = start; i < len; i++)
		dots += s[i] == '.';
	tail[0] = '\0';
	if (dots > 3)
		return;
	if (start == len || s[len - 1] == '.')
		strcat(tail, "0");
	for (; dots < 3; dots++)
		strcat(tail, ".0");
}

/* A v1 line without its CRLF yet (n < ISM_PP_V1_MAX, no CR but maybe p[n-1]). It is a valid
 * prefix when some ending makes a valid line, so this tries the shortest endings that could:
 * for the field being written, "" (it is complete), "0", ":", "::" (an IPv6 address or a
 * port cut short) or the rest of a dotted quad; then the shortest value of each later field
 * ("0.0.0.0" or "::", "0"). The full line parser judges each candidate, so the rules live in
 * one place. */
static int v1_prefix(const uint8_t *p, size_t n, struct ism_pp *out)
{
	static const char *const starts[] = {"PROXY TCP4 ", "PROXY TCP6 ", "PROXY UNKNOWN"};
	const char *cands[] = {"", "0", ":", "::", NULL};
	uint8_t line[ISM_PP_V1_MAX + 32];
	char tail[8];
	size_t i, k, field = 0, start = V1_TCP_LEN;
	bool v4;

	for (i = 0; i < 3; i++)
		if (n <= strlen(starts[i]) && memcmp(p, starts[i], n) == 0)
			return 0;
	if (p[n - 1] == '\r')
		return v1_line(p, n - 1, out) < 0 ? -1 : 0;
	if (n <= V1_TCP_LEN ||
	    (memcmp(p, starts[0], V1_TCP_LEN) != 0 && memcmp(p, starts[1], V1_TCP_LEN) != 0))
		return v1_line(p, n, out) < 0 ? -1 : 0;

	v4 = p[9] == '4';
	for (i = V1_TCP_LEN; i < n; i++) {
		if (p[i] == ' ') {
			field++;
			start = i + 1;
		}
	}
	if (field >= V1_N_FIELDS)
		return -1;
	v4_tail(p + start, n - start, tail);
	cands[4] = tail;
	for (k = 0; k < 5; k++) {
		size_t len = n;
		bool fits;

		memcpy(line, p, n);
		fits = append(line, &len, sizeof(line), cands[k]);
		for (i = field + 1; i < V1_N_FIELDS && fits; i++)
			fits = append(line, &len, sizeof(line),
				      i >= 2 ? " 0" : (v4 ? " 0.0.0.0" : " ::"));
		if (fits && v1_line(line, len, out) == 0)
			return 0;
	}
	return -1;
}

static int v1_parse(const uint8_t *p, size_t n, struct ism_pp *out)
{
	const uint8_t *cr = memchr(p, '\r', n < ISM_PP_V1_MAX ? n : ISM_PP_V1_MAX);
	size_t len;

	if (!cr || cr == p + n - 1)
		return n >= ISM_PP_V1_MAX ? -1 : v1_prefix(p, n, out);
	len = (size_t)(cr - p);
	if (cr[1] != '\n' || v1_line(p, len, out) < 0)
		return -1;
	return (int)(len + 2);
}

/* ---- v2: 16 fixed bytes, the address block, TLVs ---- */

#define V2_HDR_LEN   16
#define V2_CMD_LOCAL 0
#define V2_CMD_PROXY 1
#define V2_FAM_INET  1
#define V2_FAM_INET6 2
#define V2_FAM_UNIX  3

static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
				   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
/* address block sizes by family: src and dst addresses, then ports (not for UNIX) */
static const uint16_t v2_addr_len[] = {0, 12, 36, 216};

/* The fixed part, as far as it is present: -1 as soon as a byte of it is wrong, 0 while it is
 * incomplete, 1 with the header's total length and its address block's. */
static int v2_fixed(const uint8_t *p, size_t n, size_t *total, size_t *alen)
{
	size_t len;

	if (memcmp(p, v2_sig, n < sizeof(v2_sig) ? n : sizeof(v2_sig)) != 0)
		return -1;
	if (n > 12 && ((p[12] >> 4) != 2 || (p[12] & 0xF) > V2_CMD_PROXY))
		return -1;
	if (n > 13 && ((p[13] >> 4) > V2_FAM_UNIX || (p[13] & 0xF) > 2))
		return -1;
	if (n > 14 && V2_HDR_LEN + ((size_t)p[14] << 8) > ISM_PP_MAX_LEN)
		return -1;
	if (n < V2_HDR_LEN)
		return 0;
	len = be16(p + 14);
	*alen = v2_addr_len[p[13] >> 4];
	*total = V2_HDR_LEN + len;
	if (*total > ISM_PP_MAX_LEN || len < *alen)
		return -1;
	return 1;
}

/* CRC32c (Castagnoli, reflected polynomial 0x82F63B78, as RFC 4960 appendix B), bit by bit:
 * at most ISM_PP_MAX_LEN bytes per header, so a table would buy nothing worth its size. */
static uint32_t crc32c_update(uint32_t crc, const uint8_t *p, size_t n)
{
	size_t i;
	int k;

	for (i = 0; i < n; i++) {
		crc ^= p[i];
		for (k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1)));
	}
	return crc;
}

/* The spec's check: the CRC of the whole header with the checksum field as zeros. */
static bool v2_crc_ok(const uint8_t *p, size_t total, size_t at)
{
	static const uint8_t zeros[4];
	uint32_t crc = 0xFFFFFFFFu;

	crc = crc32c_update(crc, p, at);
	crc = crc32c_update(crc, zeros, sizeof(zeros));
	crc = crc32c_update(crc, p + at + 4, total - at - 4);
	return ~crc == be32(p + at);
}

/* TLVs that may appear once: a second one would leave which one counts ambiguous. */
enum { ONCE_AUTHORITY = 1, ONCE_SSL = 2, ONCE_CRC32C = 4, ONCE_VPCE_ID = 8 };

struct tlv_walk {
	const uint8_t *hdr; /* the header, for the CRC32c field's offset */
	struct ism_pp *out;
	size_t crc_at; /* offset of the CRC32c value in the header; 0: none */
	unsigned seen; /* ONCE_* */
};

static int once(struct tlv_walk *w, unsigned bit)
{
	if (w->seen & bit)
		return -1;
	w->seen |= bit;
	return 0;
}

/* Copies text the TLV value holds so far into a field of cap bytes. Control bytes are refused:
 * these strings end in logs and routing decisions, and a NUL would cut them short. */
static int tlv_text(char *dst, size_t cap, const uint8_t *v, size_t avail, size_t len)
{
	size_t i;

	if (len >= cap)
		return -1;
	for (i = 0; i < avail; i++) {
		if (v[i] < 0x20 || v[i] == 0x7F)
			return -1;
		dst[i] = (char)v[i];
	}
	dst[avail] = '\0';
	return 0;
}

static int tlv_walk(struct tlv_walk *w, const uint8_t *v, size_t avail, size_t len, int depth);

/* One TLV of the header (not an SSL sub-TLV), whose value is v[0..len), v[0..avail) present. */
static int tlv_value(struct tlv_walk *w, uint8_t type, const uint8_t *v, size_t avail, size_t len)
{
	struct ism_pp *out = w->out;

	switch (type) {
	case ISM_PP_TLV_AUTHORITY:
		if (once(w, ONCE_AUTHORITY) < 0)
			return -1;
		return tlv_text(out->authority, sizeof(out->authority), v, avail, len);
	case ISM_PP_TLV_CRC32C:
		if (once(w, ONCE_CRC32C) < 0 || len != 4)
			return -1;
		w->crc_at = (size_t)(v - w->hdr);
		return 0;
	case ISM_PP_TLV_SSL:
		/* client (1 byte), verify (4, network order), then sub-TLVs */
		if (once(w, ONCE_SSL) < 0 || len < 5)
			return -1;
		out->has_ssl = 1;
		if (avail < 5)
			return 0;
		out->ssl_client = v[0];
		out->ssl_verify = be32(v + 1);
		return tlv_walk(w, v + 5, avail - 5, len - 5, 1);
	case ISM_PP_TLV_AWS:
		if (len < 1)
			return -1;
		if (avail < 1 || v[0] != ISM_PP_TLV_AWS_VPCE_ID)
			return 0;
		if (once(w, ONCE_VPCE_ID) < 0)
			return -1;
		return tlv_text(out->aws_vpce_id, sizeof(out->aws_vpce_id), v + 1, avail - 1,
				len - 1);
	default: /* NOOP, and the types we do not use */
		return 0;
	}
}

/* Walks the TLVs of v[0..len), of which v[0..avail) are present (avail <= len): depth 0 for the
 * header's, 1 inside SSL (sub-TLVs are counted and checked for fit, their values not used).
 * -1 at the first rule the bytes present break, else 0: a TLV cut short by the end of the
 * bytes present stops the walk, the caller calls again with more. */
static int tlv_walk(struct tlv_walk *w, const uint8_t *v, size_t avail, size_t len, int depth)
{
	size_t o = 0;

	while (o < len) {
		size_t vlen, next, vavail;

		if (len - o < 3)
			return -1;
		if (avail - o < 3)
			return 0;
		if (++w->out->n_tlvs > ISM_PP_MAX_TLVS)
			return -1;
		vlen = be16(v + o + 1);
		next = o + 3 + vlen;
		/* the value must fit, and leave either nothing or room for another TLV */
		if (vlen > len - o - 3 || (next < len && len - next < 3))
			return -1;
		vavail = avail - o - 3 < vlen ? avail - o - 3 : vlen;
		if (depth == 0 && tlv_value(w, v[o], v + o + 3, vavail, vlen) < 0)
			return -1;
		if (vavail < vlen)
			return 0;
		o = next;
	}
	return 0;
}

static void v2_addresses(const uint8_t *p, struct ism_pp *out)
{
	const uint8_t *a = p + V2_HDR_LEN;
	unsigned fam = p[13] >> 4, tr = p[13] & 0xF;
	size_t alen;
	int af;

	out->version = 2;
	out->transport = tr == 1 ? SOCK_STREAM : tr == 2 ? SOCK_DGRAM : 0;
	if ((p[12] & 0xF) == V2_CMD_LOCAL || (fam != V2_FAM_INET && fam != V2_FAM_INET6)) {
		out->local = 1;
		return;
	}
	af = fam == V2_FAM_INET ? AF_INET : AF_INET6;
	alen = af == AF_INET ? 4 : 16;
	/* src address, dst address, src port, dst port */
	sockaddr_set(&out->src, af, a, a + 2 * alen);
	out->addrlen = sockaddr_set(&out->dst, af, a + alen, a + 2 * alen + 2);
}

static int v2_parse(const uint8_t *p, size_t n, struct ism_pp *out)
{
	struct tlv_walk w = {.hdr = p, .out = out};
	size_t total = 0, alen = 0, tlvs, avail;
	int rc = v2_fixed(p, n, &total, &alen);

	if (rc <= 0)
		return rc;
	tlvs = V2_HDR_LEN + alen;
	avail = n < total ? n : total;
	if (tlv_walk(&w, p + tlvs, avail > tlvs ? avail - tlvs : 0, total - tlvs, 0) < 0)
		return -1;
	if (n < total)
		return 0;
	if (w.crc_at && !v2_crc_ok(p, total, w.crc_at))
		return -1;
	v2_addresses(p, out);
	return (int)total;
}

int ism_pp_parse(const uint8_t *p, size_t n, struct ism_pp *out)
{
	memset(out, 0, sizeof(*out));
	if (n == 0)
		return 0;
	if (p[0] == 'P')
		return v1_parse(p, n, out);
	if (p[0] == v2_sig[0])
		return v2_parse(p, n, out);
	return -1;
}

/* ---- writing: the header an upstream connection starts with ---- */

#define V2_TRANSPORT_STREAM 1

/* Whether src and dst can be named by one header: both IPv4 or both IPv6. */
static bool one_inet_family(const struct sockaddr *src, const struct sockaddr *dst)
{
	return src != NULL && dst != NULL && src->sa_family == dst->sa_family &&
	       (src->sa_family == AF_INET || src->sa_family == AF_INET6);
}

/* The address of a (AF_INET or AF_INET6) and its port, both in network order;
 * the address's length. */
static size_t inet_parts(const struct sockaddr *a, const void **addr, const void **port)
{
	if (a->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)a;

		*addr = &in->sin_addr;
		*port = &in->sin_port;
		return 4;
	}
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)a;

	*addr = &in6->sin6_addr;
	*port = &in6->sin6_port;
	return 16;
}

static size_t write_v1(uint8_t *out, const struct sockaddr *src, const struct sockaddr *dst)
{
	char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN], line[128];
	uint16_t sport, dport;
	int n = -1;

	if (one_inet_family(src, dst) && ism_addr_text(src, s, &sport) &&
	    ism_addr_text(dst, d, &dport))
		/* glibc's longest IPv6 text is 39 bytes: 104 bytes at most */
		n = snprintf(line, sizeof(line), "PROXY TCP%c %s %s %u %u\r\n",
			     src->sa_family == AF_INET ? '4' : '6', s, d, sport, dport);
	if (n < 0 || n > ISM_PP_V1_MAX) {
		memcpy(out, "PROXY UNKNOWN\r\n", 15);
		return 15;
	}
	memcpy(out, line, (size_t)n);
	return (size_t)n;
}

static size_t write_v2(uint8_t *out, const struct sockaddr *src, const struct sockaddr *dst)
{
	const void *sa, *da, *sp, *dp;
	size_t alen;

	memcpy(out, v2_sig, sizeof(v2_sig));
	if (!one_inet_family(src, dst)) {
		out[12] = 2 << 4 | V2_CMD_LOCAL;
		out[13] = 0; /* AF_UNSPEC, UNSPEC */
		out[14] = out[15] = 0;
		return V2_HDR_LEN;
	}
	alen = inet_parts(src, &sa, &sp);
	inet_parts(dst, &da, &dp);
	out[12] = 2 << 4 | V2_CMD_PROXY;
	out[13] = (uint8_t)((alen == 4 ? V2_FAM_INET : V2_FAM_INET6) << 4 | V2_TRANSPORT_STREAM);
	out[14] = 0;
	out[15] = (uint8_t)(2 * alen + 4);
	/* src address, dst address, src port, dst port */
	memcpy(out + V2_HDR_LEN, sa, alen);
	memcpy(out + V2_HDR_LEN + alen, da, alen);
	memcpy(out + V2_HDR_LEN + 2 * alen, sp, 2);
	memcpy(out + V2_HDR_LEN + 2 * alen + 2, dp, 2);
	return V2_HDR_LEN + 2 * alen + 4;
}

size_t ism_pp_write(uint8_t out[ISM_PP_WRITE_MAX], int version, const struct sockaddr *src,
		    const struct sockaddr *dst)
{
	return version == 2 ? write_v2(out, src, dst) : write_v1(out, src, dst);
}
