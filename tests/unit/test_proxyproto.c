/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the PROXY protocol parser (worker/proxyproto.h): valid v1 and v2 headers at
 * every split point and with payload after them; each malformed case returns -1 exactly from
 * the byte that makes it malformed on, and 0 for every shorter prefix. v2 headers are built by
 * a small helper, their CRC32c by the test's own (table-driven) implementation. Every parse runs
 * on an exact-sized heap copy so that ASan catches a read past n. The writer's headers (v1 and
 * v2, IPv4 and IPv6, and those that name no addresses) go through the parser the same way. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tests/unit/check.h"

#include "worker/proxyproto.h"

static const char payload[] = "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";

/* Parses p[0..n) from an exact-sized copy. */
static int parse(const uint8_t *p, size_t n, struct ism_pp *out)
{
	uint8_t *b = malloc(n ? n : 1);
	int r;

	assert_non_null(b);
	memcpy(b, p, n);
	r = ism_pp_parse(b, n, out);
	free(b);
	return r;
}

/* ---- building v2 headers ---- */

struct hdr {
	uint8_t b[ISM_PP_MAX_LEN + 256];
	size_t len;
};

static void put(struct hdr *h, const void *p, size_t n)
{
	assert_true(h->len + n <= sizeof(h->b));
	memcpy(h->b + h->len, p, n);
	h->len += n;
}

static void put8(struct hdr *h, uint8_t v)
{
	put(h, &v, 1);
}

static void put16(struct hdr *h, uint16_t v)
{
	uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};

	put(h, b, 2);
}

static void put32(struct hdr *h, uint32_t v)
{
	put16(h, (uint16_t)(v >> 16));
	put16(h, (uint16_t)v);
}

static const uint8_t sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
				0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

#define LOCAL 0x20
#define PROXY 0x21
#define TCP4  0x11
#define UDP4  0x12
#define TCP6  0x21
#define UDP6  0x22
#define UNIX  0x31
#define UNSPC 0x00

/* The fixed part with a length to be set by v2_end, then the address block. */
static void v2_start(struct hdr *h, uint8_t ver_cmd, uint8_t fam)
{
	h->len = 0;
	put(h, sig, sizeof(sig));
	put8(h, ver_cmd);
	put8(h, fam);
	put16(h, 0);
}

/* An address block: both addresses of family af in text form, then the ports. */
static void v2_addrs(struct hdr *h, int af, const char *src, const char *dst, uint16_t sp,
		     uint16_t dp)
{
	uint8_t a[16];
	size_t len = af == AF_INET ? 4 : 16;

	assert_int_equal(inet_pton(af, src, a), 1);
	put(h, a, len);
	assert_int_equal(inet_pton(af, dst, a), 1);
	put(h, a, len);
	put16(h, sp);
	put16(h, dp);
}

/* The usual start: PROXY over TCP from 192.0.2.1:1 to 192.0.2.2:2. */
static void v2_tcp4(struct hdr *h)
{
	v2_start(h, PROXY, TCP4);
	v2_addrs(h, AF_INET, "192.0.2.1", "192.0.2.2", 1, 2);
}

static void tlv(struct hdr *h, uint8_t type, const void *v, size_t n)
{
	put8(h, type);
	put16(h, (uint16_t)n);
	if (n)
		put(h, v, n);
}

static void tlv_str(struct hdr *h, uint8_t type, const char *s)
{
	tlv(h, type, s, strlen(s));
}

/* An AWS TLV: the subtype byte, then the value. */
static void tlv_aws(struct hdr *h, uint8_t subtype, const char *s)
{
	size_t n = strlen(s);

	put8(h, ISM_PP_TLV_AWS);
	put16(h, (uint16_t)(n + 1));
	put8(h, subtype);
	put(h, s, n);
}

/* Sets the length field from what was put. */
static size_t v2_end(struct hdr *h)
{
	size_t len = h->len - 16;

	h->b[14] = (uint8_t)(len >> 8);
	h->b[15] = (uint8_t)len;
	return h->len;
}

/* A table-driven CRC32c, independent of the parser's bitwise one. */
static uint32_t test_crc32c(const uint8_t *p, size_t n)
{
	uint32_t table[256], crc = 0xFFFFFFFFu;
	size_t i;

	for (i = 0; i < 256; i++) {
		uint32_t c = (uint32_t)i;

		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		table[i] = c;
	}
	for (i = 0; i < n; i++)
		crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
	return ~crc;
}

/* A CRC32c TLV with a zero value; returns the value's offset for v2_seal. */
static size_t tlv_crc(struct hdr *h)
{
	size_t at = h->len + 3;

	put8(h, ISM_PP_TLV_CRC32C);
	put16(h, 4);
	put32(h, 0);
	return at;
}

/* Sets the length, then the checksum at crc_at over the whole header. */
static size_t v2_seal(struct hdr *h, size_t crc_at)
{
	uint32_t crc;

	v2_end(h);
	crc = test_crc32c(h->b, h->len);
	h->b[crc_at] = (uint8_t)(crc >> 24);
	h->b[crc_at + 1] = (uint8_t)(crc >> 16);
	h->b[crc_at + 2] = (uint8_t)(crc >> 8);
	h->b[crc_at + 3] = (uint8_t)crc;
	return h->len;
}

/* ---- what a valid header must give ---- */

struct want {
	int version, local, transport;
	const char *src, *dst; /* text forms; NULL when local */
	uint16_t sport, dport;
	const char *authority, *vpce;
	int has_ssl, ssl_client;
	uint32_t ssl_verify;
	uint32_t n_tlvs;
};

static void check_addr(const char *name, const struct sockaddr_storage *ss, socklen_t len,
		       const char *want, uint16_t port)
{
	char text[INET6_ADDRSTRLEN] = "";

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)ss;

		CHECK(name, len == sizeof(*a), "addrlen %u", (unsigned)len);
		inet_ntop(AF_INET, &a->sin_addr, text, sizeof(text));
		CHECK(name, ntohs(a->sin_port) == port, "port %u", ntohs(a->sin_port));
	} else {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;

		CHECK(name, ss->ss_family == AF_INET6, "family %d", ss->ss_family);
		CHECK(name, len == sizeof(*a), "addrlen %u", (unsigned)len);
		inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof(text));
		CHECK(name, ntohs(a->sin6_port) == port, "port %u", ntohs(a->sin6_port));
	}
	CHECK(name, strcmp(text, want) == 0, "address %s, want %s", text, want);
}

static void check_fields(const char *name, const struct ism_pp *pp, const struct want *w)
{
	CHECK(name, pp->version == w->version, "version %d", pp->version);
	CHECK(name, pp->local == w->local, "local %d", pp->local);
	CHECK(name, pp->transport == w->transport, "transport %d", pp->transport);
	if (w->local)
		CHECK(name, pp->addrlen == 0, "addrlen %u when local", (unsigned)pp->addrlen);
	else {
		check_addr(name, &pp->src, pp->addrlen, w->src, w->sport);
		check_addr(name, &pp->dst, pp->addrlen, w->dst, w->dport);
	}
	CHECK(name, strcmp(pp->authority, w->authority ? w->authority : "") == 0, "authority '%s'",
	      pp->authority);
	CHECK(name, strcmp(pp->aws_vpce_id, w->vpce ? w->vpce : "") == 0, "vpce '%s'",
	      pp->aws_vpce_id);
	CHECK(name, pp->has_ssl == w->has_ssl, "has_ssl %d", pp->has_ssl);
	CHECK(name, pp->ssl_client == w->ssl_client, "ssl_client %d", pp->ssl_client);
	CHECK(name, pp->ssl_verify == w->ssl_verify, "ssl_verify %u", pp->ssl_verify);
	CHECK(name, pp->n_tlvs == w->n_tlvs, "n_tlvs %u", pp->n_tlvs);
}

/* Every prefix of the header is 0; the header alone and the header followed by payload give
 * its length and the fields wanted. */
static void run_valid(const char *name, const uint8_t *hdr, size_t len, const struct want *w)
{
	uint8_t buf[ISM_PP_MAX_LEN + sizeof(payload)];
	struct ism_pp pp;
	size_t k;
	int r;

	for (k = 0; k < len; k++) {
		r = parse(hdr, k, &pp);
		CHECK(name, r == 0, "prefix %zu of %zu: got %d", k, len, r);
	}
	r = parse(hdr, len, &pp);
	CHECK(name, r == (int)len, "alone: got %d want %zu", r, len);
	check_fields(name, &pp, w);
	assert_true(len + sizeof(payload) <= sizeof(buf));
	memcpy(buf, hdr, len);
	memcpy(buf + len, payload, sizeof(payload));
	for (k = 1; k <= sizeof(payload); k++) {
		r = parse(buf, len + k, &pp);
		CHECK(name, r == (int)len, "with %zu payload bytes: got %d want %zu", k, r, len);
	}
	check_fields(name, &pp, w);
}

/* Every prefix shorter than at is 0; from at bytes on, to the whole input, -1. */
static void run_bad(const char *name, const uint8_t *p, size_t n, size_t at)
{
	struct ism_pp pp;
	size_t k;
	int r;

	assert_true(at <= n);
	for (k = 0; k <= n; k++) {
		r = parse(p, k, &pp);
		CHECK(name, r == (k < at ? 0 : -1), "length %zu (decided at %zu): got %d", k, at,
		      r);
	}
}

/* ---- v1 ---- */

struct v1_valid {
	const char *name, *line;
	struct want w;
};

#define TCP SOCK_STREAM

static const struct v1_valid v1_valid[] = {
    {"v1 TCP4",
     "PROXY TCP4 192.168.0.1 10.0.0.2 56324 443\r\n",
     {1, 0, TCP, "192.168.0.1", "10.0.0.2", 56324, 443, NULL, NULL, 0, 0, 0, 0}},
    {"v1 TCP4 extremes",
     "PROXY TCP4 255.255.255.255 0.0.0.0 65535 0\r\n",
     {1, 0, TCP, "255.255.255.255", "0.0.0.0", 65535, 0, NULL, NULL, 0, 0, 0, 0}},
    {"v1 TCP6",
     "PROXY TCP6 2001:db8::1 ::ffff:10.0.0.1 1 65535\r\n",
     {1, 0, TCP, "2001:db8::1", "::ffff:10.0.0.1", 1, 65535, NULL, NULL, 0, 0, 0, 0}},
    {"v1 TCP6 full form",
     "PROXY TCP6 2001:DB8:0:0:0:0:0:A ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
     " 8080 80\r\n",
     {1, 0, TCP, "2001:db8::a", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 8080, 80, NULL, NULL, 0,
      0, 0, 0}},
    {"v1 TCP6 ::",
     "PROXY TCP6 :: ::1 10 20\r\n",
     {1, 0, TCP, "::", "::1", 10, 20, NULL, NULL, 0, 0, 0, 0}},
    {"v1 UNKNOWN", "PROXY UNKNOWN\r\n", {1, 1, 0, NULL, NULL, 0, 0, NULL, NULL, 0, 0, 0, 0}},
    {"v1 UNKNOWN with addresses",
     "PROXY UNKNOWN ffff::1 ffff::2 65535 65535\r\n",
     {1, 1, 0, NULL, NULL, 0, 0, NULL, NULL, 0, 0, 0, 0}},
};

static void test_v1_valid(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(v1_valid) / sizeof(v1_valid[0]); i++) {
		const struct v1_valid *c = &v1_valid[i];

		run_valid(c->name, (const uint8_t *)c->line, strlen(c->line), &c->w);
	}
}

/* Lines of exactly ISM_PP_V1_MAX bytes are accepted, one more is not. */
static void test_v1_max_len(void **state)
{
	static const struct want unknown = {1, 1, 0, NULL, NULL, 0, 0, NULL, NULL, 0, 0, 0, 0};
	static const struct want tcp6 = {
	    1, 0, TCP, "::ffff:255.255.255.255", "1:2:3:4:5:6:7:8", 65535, 65535, NULL, NULL, 0,
	    0, 0, 0};
	/* 45 + 38 characters of address: the line is 107 bytes */
	const char *six = "PROXY TCP6 0000:0000:0000:0000:0000:ffff:255.255.255.255 "
			  "0001:0002:0003:0004:0005:0006:0007:8 65535 65535\r\n";
	char line[ISM_PP_V1_MAX + 2];

	(void)state;
	assert_int_equal(strlen(six), ISM_PP_V1_MAX);
	run_valid("v1 TCP6 107 bytes", (const uint8_t *)six, ISM_PP_V1_MAX, &tcp6);

	memset(line, 'x', sizeof(line));
	memcpy(line, "PROXY UNKNOWN ", 14);
	memcpy(line + ISM_PP_V1_MAX - 2, "\r\n", 2);
	run_valid("v1 UNKNOWN 107 bytes", (const uint8_t *)line, ISM_PP_V1_MAX, &unknown);
	/* one byte more: 106 bytes without a CR can only end in a 108-byte line */
	memcpy(line + ISM_PP_V1_MAX - 2, "x\r\n", 3);
	run_bad("v1 UNKNOWN 108 bytes", (const uint8_t *)line, ISM_PP_V1_MAX + 1,
		ISM_PP_V1_MAX - 1);
}

struct v1_bad {
	const char *name, *line;
	size_t at;  /* the length from which the bytes are known to be malformed */
	size_t len; /* of line; 0: strlen */
};

static const struct v1_bad v1_bad[] = {
    {"lowercase proxy", "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", 1, 0},
    {"PROXY then X", "PROXX TCP4 1.2.3.4 5.6.7.8 1 2\r\n", 5, 0},
    {"no space after PROXY", "PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n", 6, 0},
    {"double space after PROXY", "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", 7, 0},
    {"lowercase tcp4", "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", 7, 0},
    {"TCP5", "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", 10, 0},
    {"TCP4 no space", "PROXY TCP41.2.3.4 5.6.7.8 1 2\r\n", 11, 0},
    {"UDP4", "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", 8, 0},
    {"UNKNOWN then a letter", "PROXY UNKNOWNX\r\n", 14, 0},
    {"UNKNOWN then LF", "PROXY UNKNOWN a\nb\r\n", 16, 0},
    {"UNKNOWN CR without LF", "PROXY UNKNOWN a\rb\r\n", 17, 0},
    {"double space between addresses", "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", 20, 0},
    {"space before the first address", "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", 12, 0},
    {"octet 256", "PROXY TCP4 256.1.1.1 5.6.7.8 1 2\r\n", 14, 0},
    {"leading zero octet", "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", 13, 0},
    {"five octets", "PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n", 19, 0},
    {"three octets", "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", 17, 0},
    {"IPv6 in TCP4", "PROXY TCP4 ::1 5.6.7.8 1 2\r\n", 12, 0},
    {"IPv4 in TCP6", "PROXY TCP6 1.2.3.4 ::1 1 2\r\n", 13, 0},
    {"two ::", "PROXY TCP6 1::2::3 ::1 1 2\r\n", 17, 0},
    {"IPv6 group of 5", "PROXY TCP6 12345:: ::1 1 2\r\n", 16, 0},
    {"IPv6 zone", "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", 19, 0},
    {"IPv6 brackets", "PROXY TCP6 [::1] ::1 1 2\r\n", 12, 0},
    {"NUL in address", "PROXY TCP4 1.2\0.3.4 5.6.7.8 1 2\r\n", 15, 33},
    {"port 65536", "PROXY TCP4 1.2.3.4 5.6.7.8 65536 80\r\n", 32, 0},
    {"port 100000", "PROXY TCP4 1.2.3.4 5.6.7.8 100000 80\r\n", 33, 0},
    {"port +80", "PROXY TCP4 1.2.3.4 5.6.7.8 +80 80\r\n", 28, 0},
    {"port -1", "PROXY TCP4 1.2.3.4 5.6.7.8 -1 80\r\n", 28, 0},
    {"port 080", "PROXY TCP4 1.2.3.4 5.6.7.8 080 80\r\n", 29, 0},
    {"port hex", "PROXY TCP4 1.2.3.4 5.6.7.8 0x50 80\r\n", 29, 0},
    {"port letter", "PROXY TCP4 1.2.3.4 5.6.7.8 80 8a\r\n", 32, 0},
    {"missing port", "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", 29, 0},
    {"extra field", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", 31, 0},
    {"trailing space", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", 31, 0},
    {"bare LF", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", 31, 0},
    {"CR then X", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX\n", 32, 0},
    {"tab", "PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n", 19, 0},
    /* found by fuzz_proxyproto: a line shorter than "PROXY TCP4 " compared with it */
    {"short, not TCP", "PROXY \x16\x03T\x01", 7, 0},
    {"HTTP request", "GET / HTTP/1.1\r\n", 1, 0},
    {"TLS record", "\x16\x03\x01", 1, 0},
};

static void test_v1_bad(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(v1_bad) / sizeof(v1_bad[0]); i++) {
		const struct v1_bad *c = &v1_bad[i];

		run_bad(c->name, (const uint8_t *)c->line, c->len ? c->len : strlen(c->line),
			c->at);
	}
}

/* Without a CR the line is malformed once ISM_PP_V1_MAX - 1 bytes are there, whatever follows;
 * a prefix that no ending could fit in ISM_PP_V1_MAX bytes is malformed at once. */
static void test_v1_too_long(void **state)
{
	char line[ISM_PP_MAX_LEN + 16];
	/* 45 characters of each address leave no room for the ports */
	const char *wide = "PROXY TCP6 0000:0000:0000:0000:0000:ffff:255.255.255.255 "
			   "0000:0000:0000:0000:0000:ffff:255.255.255.255 1 2\r\n";

	(void)state;
	memset(line, 'x', sizeof(line));
	memcpy(line, "PROXY UNKNOWN ", 14);
	run_bad("UNKNOWN without CRLF", (const uint8_t *)line, sizeof(line), ISM_PP_V1_MAX - 1);
	/* "PROXY TCP6 " 11 + 45 + " " + the second address: at its 41st character the
	 * shortest ending (" 0 0\r\n", 6 bytes) no longer fits */
	run_bad("TCP6 too wide", (const uint8_t *)wide, strlen(wide), 11 + 45 + 1 + 45);
	/* a header can never be longer than ISM_PP_MAX_LEN */
	struct ism_pp pp;
	assert_int_equal(parse((const uint8_t *)line, ISM_PP_MAX_LEN, &pp), -1);
}

/* ---- v2 ---- */

static void test_v2_inet(void **state)
{
	static const struct want w = {
	    2, 0, TCP, "192.0.2.1", "198.51.100.7", 56324, 443, NULL, NULL, 0, 0, 0, 0};
	static const struct want wu = {2,    0,	   SOCK_DGRAM, "10.1.2.3", "10.3.2.1", 53, 5353,
				       NULL, NULL, 0,	       0,	   0,	       0};
	struct hdr h;

	(void)state;
	v2_start(&h, PROXY, TCP4);
	v2_addrs(&h, AF_INET, "192.0.2.1", "198.51.100.7", 56324, 443);
	run_valid("v2 INET", h.b, v2_end(&h), &w);

	v2_start(&h, PROXY, UDP4);
	v2_addrs(&h, AF_INET, "10.1.2.3", "10.3.2.1", 53, 5353);
	run_valid("v2 INET DGRAM", h.b, v2_end(&h), &wu);
}

static void test_v2_inet6(void **state)
{
	static const struct want w = {
	    2, 0, TCP, "2001:db8::1", "2001:db8:ffff::2", 1, 65535, NULL, NULL, 0, 0, 0, 0};
	struct hdr h;

	(void)state;
	v2_start(&h, PROXY, TCP6);
	v2_addrs(&h, AF_INET6, "2001:db8::1", "2001:db8:ffff::2", 1, 65535);
	run_valid("v2 INET6", h.b, v2_end(&h), &w);
}

static void test_v2_local(void **state)
{
	static const struct want w = {2, 1, 0, NULL, NULL, 0, 0, NULL, NULL, 0, 0, 0, 0};
	static const struct want ws = {2, 1, TCP, NULL, NULL, 0, 0, NULL, NULL, 0, 0, 0, 1};
	static const struct want wa = {2, 1, TCP, NULL, NULL, 0, 0, "h.example", NULL, 0, 0, 0, 1};
	static const struct want wp = {2, 1, 0, NULL, NULL, 0, 0, NULL, NULL, 0, 0, 0, 0};
	static const struct want wunix = {2, 1, TCP, NULL, NULL, 0, 0, NULL, NULL, 0, 0, 0, 0};
	uint8_t sun[216];
	struct hdr h;

	(void)state;
	v2_start(&h, LOCAL, UNSPC);
	run_valid("v2 LOCAL", h.b, v2_end(&h), &w);

	/* addresses are ignored for LOCAL, TLVs are not */
	v2_start(&h, LOCAL, TCP4);
	v2_addrs(&h, AF_INET, "192.0.2.1", "198.51.100.7", 1, 2);
	tlv(&h, ISM_PP_TLV_NOOP, NULL, 0);
	run_valid("v2 LOCAL with INET addresses", h.b, v2_end(&h), &ws);

	v2_start(&h, LOCAL, TCP6);
	v2_addrs(&h, AF_INET6, "::1", "::2", 1, 2);
	tlv_str(&h, ISM_PP_TLV_AUTHORITY, "h.example");
	run_valid("v2 LOCAL with INET6 addresses", h.b, v2_end(&h), &wa);

	/* UNIX addresses: treated as local */
	memset(sun, 0, sizeof(sun));
	memcpy(sun, "/run/src.sock", 13);
	memcpy(sun + 108, "/run/dst.sock", 13);
	v2_start(&h, PROXY, UNIX);
	put(&h, sun, sizeof(sun));
	run_valid("v2 UNIX", h.b, v2_end(&h), &wunix);

	/* PROXY over UNSPEC: no addresses to use */
	v2_start(&h, PROXY, UNSPC);
	run_valid("v2 PROXY UNSPEC", h.b, v2_end(&h), &wp);
}

/* One header with every TLV kind: authority, SSL with sub-TLVs, AWS VPC endpoint id, NOOP, an
 * unknown type, ALPN, and the CRC32c over all of it. */
static void test_v2_tlvs(void **state)
{
	static const struct want w = {2,
				      0,
				      TCP,
				      "192.0.2.1",
				      "198.51.100.7",
				      56324,
				      443,
				      "api.example.com",
				      "vpce-08d2bf15fac5001c9",
				      1,
				      ISM_PP_SSL_CLIENT_SSL | ISM_PP_SSL_CLIENT_CERT_CONN,
				      0x01020304,
				      10};
	struct hdr h, ssl;
	size_t at;

	(void)state;
	ssl.len = 0;
	put8(&ssl, ISM_PP_SSL_CLIENT_SSL | ISM_PP_SSL_CLIENT_CERT_CONN);
	put32(&ssl, 0x01020304);
	tlv_str(&ssl, ISM_PP_TLV_SSL_VERSION, "TLSv1.3");
	tlv_str(&ssl, ISM_PP_TLV_SSL_CN, "client.example");
	tlv_str(&ssl, ISM_PP_TLV_SSL_CIPHER, "TLS_AES_128_GCM_SHA256");

	v2_start(&h, PROXY, TCP4);
	v2_addrs(&h, AF_INET, "192.0.2.1", "198.51.100.7", 56324, 443);
	tlv_str(&h, ISM_PP_TLV_AUTHORITY, "api.example.com");
	tlv(&h, ISM_PP_TLV_SSL, ssl.b, ssl.len);
	tlv_aws(&h, ISM_PP_TLV_AWS_VPCE_ID, "vpce-08d2bf15fac5001c9");
	tlv(&h, ISM_PP_TLV_NOOP, "\0\0\0", 3);
	tlv_str(&h, 0xE5, "opaque\x01\x02");
	tlv_str(&h, ISM_PP_TLV_ALPN, "h2");
	at = tlv_crc(&h);
	run_valid("v2 all TLVs, CRC32c last", h.b, v2_seal(&h, at), &w);
}

static void test_v2_tlvs_more(void **state)
{
	static const struct want wcrc = {2,	0,    SOCK_DGRAM, "::1", "::2", 7, 8,
					 "a.b", NULL, 0,	  0,	 0,	2};
	static const struct want wssl = {2,    0,    TCP, "192.0.2.1", "192.0.2.2", 1, 2,
					 NULL, NULL, 1,	  0,	       0xFFFFFFFF,  1};
	static const struct want waws = {2,    0,    TCP, "192.0.2.1", "192.0.2.2", 1, 2,
					 NULL, NULL, 0,	  0,	       0,	    2};
	struct want w = {2, 0, TCP, "192.0.2.1", "192.0.2.2", 1, 2, NULL, NULL, 0, 0, 0, 1};
	char name[256];
	struct hdr h;
	size_t at;

	(void)state;
	/* the CRC32c first, before the TLV it also covers */
	v2_start(&h, PROXY, UDP6);
	v2_addrs(&h, AF_INET6, "::1", "::2", 7, 8);
	at = tlv_crc(&h);
	tlv_str(&h, ISM_PP_TLV_AUTHORITY, "a.b");
	run_valid("v2 CRC32c first", h.b, v2_seal(&h, at), &wcrc);

	/* SSL without sub-TLVs, a failed verification */
	v2_tcp4(&h);
	tlv(&h, ISM_PP_TLV_SSL, "\x00\xFF\xFF\xFF\xFF", 5);
	run_valid("v2 SSL bare", h.b, v2_end(&h), &wssl);

	/* AWS TLVs of other subtypes are skipped; an empty authority reads as absent */
	v2_tcp4(&h);
	tlv_aws(&h, 0x02, "something-else");
	tlv(&h, ISM_PP_TLV_AUTHORITY, NULL, 0);
	run_valid("v2 AWS other subtype", h.b, v2_end(&h), &waws);

	/* the longest authority and VPC endpoint id that fit */
	memset(name, 'a', sizeof(name));
	name[255] = '\0';
	w.authority = name;
	v2_tcp4(&h);
	tlv_str(&h, ISM_PP_TLV_AUTHORITY, name);
	run_valid("v2 authority 255", h.b, v2_end(&h), &w);
	name[63] = '\0';
	w.authority = NULL;
	w.vpce = name;
	v2_tcp4(&h);
	tlv_aws(&h, ISM_PP_TLV_AWS_VPCE_ID, name);
	run_valid("v2 VPCE id 63", h.b, v2_end(&h), &w);
}

/* ISM_PP_MAX_TLVS TLVs, and a header of exactly ISM_PP_MAX_LEN bytes. */
static void test_v2_limits(void **state)
{
	struct want w = {2, 0, TCP, "192.0.2.1", "192.0.2.2", 1, 2, NULL, NULL, 0, 0, 0, 0};
	uint8_t pad[ISM_PP_MAX_LEN];
	struct hdr h;
	size_t i;

	(void)state;
	v2_tcp4(&h);
	for (i = 0; i < ISM_PP_MAX_TLVS; i++)
		tlv(&h, ISM_PP_TLV_NOOP, NULL, 0);
	w.n_tlvs = ISM_PP_MAX_TLVS;
	run_valid("v2 ISM_PP_MAX_TLVS TLVs", h.b, v2_end(&h), &w);
	tlv(&h, ISM_PP_TLV_NOOP, NULL, 0);
	run_bad("v2 one TLV too many", h.b, v2_end(&h), h.len);

	memset(pad, 0, sizeof(pad));
	v2_tcp4(&h);
	tlv(&h, ISM_PP_TLV_NOOP, pad, ISM_PP_MAX_LEN - 16 - 12 - 3);
	w.n_tlvs = 1;
	assert_int_equal(v2_end(&h), ISM_PP_MAX_LEN);
	run_valid("v2 ISM_PP_MAX_LEN bytes", h.b, ISM_PP_MAX_LEN, &w);
	/* one byte more: the length field alone says so */
	tlv(&h, 0x04, NULL, 0);
	h.len -= 2;
	run_bad("v2 ISM_PP_MAX_LEN + 1", h.b, v2_end(&h), 16);
	h.b[14] = 0x08;
	run_bad("v2 length high byte too big", h.b, 16, 15);
}

/* A valid header with one byte changed, malformed from that byte on. */
static void run_bad_byte(const char *name, const struct hdr *good, size_t i, uint8_t v)
{
	struct hdr h = *good;
	char label[96];

	h.b[i] = v;
	snprintf(label, sizeof(label), "%s (byte %zu = 0x%02x)", name, i, v);
	run_bad(label, h.b, h.len, i + 1);
}

static void test_v2_bad_fixed(void **state)
{
	struct hdr good;
	unsigned v;
	size_t i;

	(void)state;
	v2_tcp4(&good);
	v2_end(&good);
	for (i = 0; i < 12; i++) {
		run_bad_byte("signature", &good, i, (uint8_t)(sig[i] ^ 0x01));
		run_bad_byte("signature", &good, i, (uint8_t)(sig[i] ^ 0x80));
	}
	for (v = 0; v < 16; v++)
		if (v != 2) {
			run_bad_byte("version", &good, 12, (uint8_t)(v << 4 | 1));
			run_bad_byte("version", &good, 12, (uint8_t)(v << 4));
		}
	for (v = 2; v < 16; v++)
		run_bad_byte("command", &good, 12, (uint8_t)(0x20 | v));
	for (v = 4; v < 16; v++)
		run_bad_byte("family", &good, 13, (uint8_t)(v << 4 | 1));
	for (v = 3; v < 16; v++)
		run_bad_byte("transport", &good, 13, (uint8_t)(0x10 | v));
}

/* Length fields too short for the address block the family declares. */
static void test_v2_bad_length(void **state)
{
	static const uint8_t fams[] = {TCP4, TCP6, UNIX};
	static const size_t need[] = {12, 36, 216};
	uint8_t zeros[216] = {0};
	struct hdr h;

	(void)state;
	for (size_t i = 0; i < 3; i++) {
		v2_start(&h, PROXY, fams[i]);
		put(&h, zeros, need[i] - 1);
		run_bad("address block too short", h.b, v2_end(&h), 16);
		/* for LOCAL too: the TLVs would start inside the length otherwise */
		h.b[12] = LOCAL;
		run_bad("LOCAL address block too short", h.b, h.len, 16);
	}
}

static void test_v2_bad_tlvs(void **state)
{
	const size_t base = 16 + 12; /* where v2_tcp4's TLVs start */
	struct hdr h, ssl;
	char name[257];
	size_t at;

	(void)state;
	/* a TLV whose value runs past the length: known from its header */
	v2_tcp4(&h);
	tlv(&h, ISM_PP_TLV_NOOP, "abcde", 5);
	h.b[base + 2] = 6;
	run_bad("TLV value overruns", h.b, v2_end(&h), base + 3);
	/* one or two bytes left after the last TLV: no room for a TLV header */
	v2_tcp4(&h);
	tlv(&h, ISM_PP_TLV_NOOP, NULL, 0);
	put8(&h, ISM_PP_TLV_NOOP);
	run_bad("1 byte after the last TLV", h.b, v2_end(&h), base + 3);
	put8(&h, 0);
	run_bad("2 bytes after the last TLV", h.b, v2_end(&h), base + 3);
	v2_tcp4(&h);
	put8(&h, ISM_PP_TLV_NOOP);
	put8(&h, 0);
	run_bad("2 bytes of TLVs", h.b, v2_end(&h), 16);

	/* CRC32c: a wrong value is known only at the end */
	v2_tcp4(&h);
	tlv_str(&h, ISM_PP_TLV_AUTHORITY, "x.example");
	at = tlv_crc(&h);
	v2_seal(&h, at);
	h.b[at + 3] ^= 1;
	run_bad("CRC32c mismatch", h.b, h.len, h.len);
	h.b[at + 3] ^= 1;
	h.b[base + 3] ^= 0x20; /* the authority's first letter, in upper case */
	run_bad("CRC32c over a changed byte", h.b, h.len, h.len);
	v2_tcp4(&h);
	tlv(&h, ISM_PP_TLV_CRC32C, "\0\0\0", 3);
	run_bad("CRC32c of 3 bytes", h.b, v2_end(&h), base + 3);
	v2_tcp4(&h);
	tlv(&h, ISM_PP_TLV_CRC32C, "\0\0\0\0\0", 5);
	run_bad("CRC32c of 5 bytes", h.b, v2_end(&h), base + 3);
	v2_tcp4(&h);
	at = tlv_crc(&h);
	tlv_crc(&h);
	run_bad("two CRC32c", h.b, v2_seal(&h, at), base + 7 + 3);

	/* authority */
	memset(name, 'a', sizeof(name));
	name[256] = '\0';
	v2_tcp4(&h);
	tlv_str(&h, ISM_PP_TLV_AUTHORITY, name);
	run_bad("authority 256", h.b, v2_end(&h), base + 3);
	v2_tcp4(&h);
	tlv_str(&h, ISM_PP_TLV_AUTHORITY, "a.example\n");
	run_bad("authority with LF", h.b, v2_end(&h), base + 3 + 10);
	v2_tcp4(&h);
	tlv(&h, ISM_PP_TLV_AUTHORITY, "a\0b", 3);
	run_bad("authority with NUL", h.b, v2_end(&h), base + 3 + 2);
	v2_tcp4(&h);
	tlv_str(&h, ISM_PP_TLV_AUTHORITY, "a.example");
	tlv_str(&h, ISM_PP_TLV_AUTHORITY, "b.example");
	run_bad("two authorities", h.b, v2_end(&h), base + 12 + 3);

	/* SSL */
	v2_tcp4(&h);
	tlv(&h, ISM_PP_TLV_SSL, "\x01\0\0\0", 4);
	run_bad("SSL of 4 bytes", h.b, v2_end(&h), base + 3);
	ssl.len = 0;
	put8(&ssl, 1);
	put32(&ssl, 0);
	tlv_str(&ssl, ISM_PP_TLV_SSL_VERSION, "TLSv1.2");
	ssl.b[5 + 2] = 8; /* the sub-TLV claims one byte more than the SSL TLV holds */
	v2_tcp4(&h);
	tlv(&h, ISM_PP_TLV_SSL, ssl.b, ssl.len);
	run_bad("SSL sub-TLV overruns", h.b, v2_end(&h), base + 3 + 5 + 3);
	ssl.b[5 + 2] = 7;
	put8(&ssl, 0x21);
	v2_tcp4(&h);
	tlv(&h, ISM_PP_TLV_SSL, ssl.b, ssl.len);
	run_bad("SSL 1 byte after its sub-TLVs", h.b, v2_end(&h), base + 3 + 5 + 3);
	v2_tcp4(&h);
	tlv(&h, ISM_PP_TLV_SSL, "\x01\0\0\0\0", 5);
	tlv(&h, ISM_PP_TLV_SSL, "\x01\0\0\0\0", 5);
	run_bad("two SSL", h.b, v2_end(&h), base + 8 + 3);

	/* AWS */
	v2_tcp4(&h);
	tlv(&h, ISM_PP_TLV_AWS, NULL, 0);
	run_bad("AWS without subtype", h.b, v2_end(&h), base + 3);
	name[64] = '\0';
	v2_tcp4(&h);
	tlv_aws(&h, ISM_PP_TLV_AWS_VPCE_ID, name);
	run_bad("VPCE id 64", h.b, v2_end(&h), base + 3 + 1);
	v2_tcp4(&h);
	tlv_aws(&h, ISM_PP_TLV_AWS_VPCE_ID, "vpce-1\x7f");
	run_bad("VPCE id with DEL", h.b, v2_end(&h), base + 3 + 1 + 7);
	v2_tcp4(&h);
	tlv_aws(&h, ISM_PP_TLV_AWS_VPCE_ID, "vpce-1");
	tlv_aws(&h, ISM_PP_TLV_AWS_VPCE_ID, "vpce-2");
	run_bad("two VPCE ids", h.b, v2_end(&h), base + 10 + 4);
}

/* A PROXY header, then the payload byte by byte into one buffer, as a connection gets it: the
 * first answer that is not 0 comes with the header's last byte. */
static void test_bytewise(void **state)
{
	const char *v1 = "PROXY TCP4 192.168.0.1 10.0.0.2 56324 443\r\n";
	uint8_t rx[256];
	struct ism_pp pp;
	struct hdr h;
	size_t got;
	int r;

	(void)state;
	v2_start(&h, PROXY, TCP6);
	v2_addrs(&h, AF_INET6, "::1", "::2", 1, 2);
	tlv_str(&h, ISM_PP_TLV_AUTHORITY, "a");
	v2_end(&h);
	memcpy(h.b + h.len, payload, sizeof(payload));
	for (got = 1, r = 0; r == 0 && got <= h.len + sizeof(payload); got++) {
		memcpy(rx, h.b, got);
		r = ism_pp_parse(rx, got, &pp);
	}
	assert_int_equal(r, (int)h.len);
	assert_int_equal(got - 1, h.len);

	memcpy(h.b, v1, strlen(v1));
	memcpy(h.b + strlen(v1), payload, sizeof(payload));
	for (got = 1, r = 0; r == 0 && got <= strlen(v1) + sizeof(payload); got++) {
		memcpy(rx, h.b, got);
		r = ism_pp_parse(rx, got, &pp);
	}
	assert_int_equal(r, (int)strlen(v1));
	assert_int_equal(got - 1, strlen(v1));
}

/* ---- the writer, read back by the parser ---- */

static void sockaddr_of(union ism_pp_addr *a, int af, const char *text, uint16_t port)
{
	memset(a, 0, sizeof(*a));
	if (af == AF_INET) {
		a->in.sin_family = AF_INET;
		a->in.sin_port = htons(port);
		assert_int_equal(inet_pton(AF_INET, text, &a->in.sin_addr), 1);
	} else {
		a->in6.sin6_family = AF_INET6;
		a->in6.sin6_port = htons(port);
		assert_int_equal(inet_pton(AF_INET6, text, &a->in6.sin6_addr), 1);
	}
}

struct written {
	const char *name;
	int version, af;
	const char *src, *dst;
	uint16_t sport, dport;
	const char *v1; /* the v1 line expected; NULL for v2 */
	size_t len;
};

static const struct written written[] = {
    {"write v1 TCP4", 1, AF_INET, "127.0.0.2", "127.0.0.1", 40123, 8080,
     "PROXY TCP4 127.0.0.2 127.0.0.1 40123 8080\r\n", 0},
    {"write v1 TCP6", 1, AF_INET6, "2001:db8::7", "::1", 1, 443,
     "PROXY TCP6 2001:db8::7 ::1 1 443\r\n", 0},
    {"write v1 longest", 1, AF_INET6, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe",
     "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535, 65534,
     "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
     " 65535 65534\r\n",
     0},
    {"write v2 INET", 2, AF_INET, "192.0.2.9", "10.1.2.3", 65535, 0, NULL, 16 + 12},
    {"write v2 INET6", 2, AF_INET6, "2001:db8::7", "::ffff:10.0.0.1", 5555, 80, NULL, 16 + 36},
};

static void test_write(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(written) / sizeof(written[0]); i++) {
		const struct written *c = &written[i];
		struct want w = {c->version, 0,	   TCP, c->src, c->dst, c->sport, c->dport,
				 NULL,	     NULL, 0,	0,	0,	0};
		uint8_t out[ISM_PP_WRITE_MAX];
		union ism_pp_addr src, dst;
		size_t n;

		sockaddr_of(&src, c->af, c->src, c->sport);
		sockaddr_of(&dst, c->af, c->dst, c->dport);
		n = ism_pp_write(out, c->version, &src.sa, &dst.sa);
		CHECK(c->name, n <= ISM_PP_WRITE_MAX, "length %zu", n);
		if (c->v1 != NULL)
			CHECK(c->name, n == strlen(c->v1) && memcmp(out, c->v1, n) == 0,
			      "wrote %.*s", (int)n, (const char *)out);
		else
			CHECK(c->name, n == c->len, "length %zu, want %zu", n, c->len);
		run_valid(c->name, out, n, &w);
	}
}

/* No addresses, or none one header can name: v1 UNKNOWN, v2 LOCAL (UNSPEC, no address
 * block), which the receiver reads as "keep the connection's own". */
static void test_write_unnamed(void **state)
{
	static const struct want v1 = {1, 1, 0, NULL, NULL, 0, 0, NULL, NULL, 0, 0, 0, 0};
	static const struct want v2 = {2, 1, 0, NULL, NULL, 0, 0, NULL, NULL, 0, 0, 0, 0};
	static const uint8_t local[16] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51,
					  0x55, 0x49, 0x54, 0x0A, 0x20, 0x00, 0x00, 0x00};
	union ism_pp_addr a4, a6, un;
	const struct sockaddr *pairs[][2] = {
	    {NULL, NULL}, {&a4.sa, NULL}, {NULL, &a6.sa}, {&a4.sa, &a6.sa}, {&un.sa, &un.sa}};
	uint8_t out[ISM_PP_WRITE_MAX];
	size_t n;

	(void)state;
	sockaddr_of(&a4, AF_INET, "127.0.0.1", 1);
	sockaddr_of(&a6, AF_INET6, "::1", 2);
	memset(&un, 0, sizeof(un));
	un.sa.sa_family = AF_UNIX;
	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		n = ism_pp_write(out, 1, pairs[i][0], pairs[i][1]);
		CHECK("write v1 UNKNOWN", n == 15 && memcmp(out, "PROXY UNKNOWN\r\n", 15) == 0,
		      "pair %zu: %.*s", i, (int)n, (const char *)out);
		run_valid("write v1 UNKNOWN", out, n, &v1);
		n = ism_pp_write(out, 2, pairs[i][0], pairs[i][1]);
		CHECK("write v2 LOCAL", n == sizeof(local) && memcmp(out, local, n) == 0,
		      "pair %zu", i);
		run_valid("write v2 LOCAL", out, n, &v2);
	}
}

static void test_crc_oracle(void **state)
{
	(void)state;
	/* the standard check value of CRC-32C, so the test's own CRC is the right one */
	assert_true(test_crc32c((const uint8_t *)"123456789", 9) == 0xE3069283u);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_crc_oracle),	  cmocka_unit_test(test_v1_valid),
	    cmocka_unit_test(test_v1_max_len),	  cmocka_unit_test(test_v1_bad),
	    cmocka_unit_test(test_v1_too_long),	  cmocka_unit_test(test_v2_inet),
	    cmocka_unit_test(test_v2_inet6),	  cmocka_unit_test(test_v2_local),
	    cmocka_unit_test(test_v2_tlvs),	  cmocka_unit_test(test_v2_tlvs_more),
	    cmocka_unit_test(test_v2_limits),	  cmocka_unit_test(test_v2_bad_fixed),
	    cmocka_unit_test(test_v2_bad_length), cmocka_unit_test(test_v2_bad_tlvs),
	    cmocka_unit_test(test_bytewise),	  cmocka_unit_test(test_write),
	    cmocka_unit_test(test_write_unnamed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
