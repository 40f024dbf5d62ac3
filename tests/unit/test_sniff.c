/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of first-bytes detection and SNI extraction (worker/sniff.h). Real ClientHellos
 * come from OpenSSL clients (TLS 1.2, TLS 1.3, both; with and without SNI) writing into a memory
 * BIO; the malformed ones from a small builder or by corrupting a real one. Every split point of
 * every hello is -EAGAIN, a hello spread over several records parses the same, and every length
 * field corrupted gives -EINVAL, on exact-sized heap copies so that ASan sees any read past n. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tests/unit/check.h"
#include <openssl/ssl.h>

#include "worker/sniff.h"

#define BUF_CAP (3 * ISM_SNIFF_MAX_BYTES)

struct buf {
	uint8_t b[BUF_CAP];
	size_t len;
};

static struct buf *buf_new(void)
{
	struct buf *b = calloc(1, sizeof(*b));

	assert_non_null(b);
	return b;
}

static void put(struct buf *b, const void *p, size_t n)
{
	assert_true(b->len + n <= sizeof(b->b));
	if (n)
		memcpy(b->b + b->len, p, n);
	b->len += n;
}

static void put8(struct buf *b, unsigned v)
{
	uint8_t c = (uint8_t)v;

	put(b, &c, 1);
}

static void put16(struct buf *b, unsigned v)
{
	put8(b, v >> 8);
	put8(b, v);
}

static void put24(struct buf *b, unsigned v)
{
	put8(b, v >> 16);
	put16(b, v & 0xFFFF);
}

static unsigned get16(const uint8_t *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

/* Runs ism_sniff_sni on an exact-sized copy of p[0..n). */
static int sni(const uint8_t *p, size_t n, char *out, size_t outsz)
{
	uint8_t *b = malloc(n ? n : 1);
	int r;

	assert_non_null(b);
	memcpy(b, p, n);
	r = ism_sniff_sni(b, n, out, outsz);
	free(b);
	return r;
}

/* Every prefix shorter than at is -EAGAIN; from at bytes on, to n, the answer is want (and the
 * name, for want > 0). */
static void run_sni(const char *name, const uint8_t *p, size_t n, size_t at, int want,
		    const char *want_name)
{
	char out[256];
	size_t k;
	int r;

	assert_true(at <= n);
	for (k = 0; k <= n; k++) {
		memset(out, 'Z', sizeof(out));
		r = sni(p, k, out, sizeof(out));
		CHECK(name, r == (k < at ? -EAGAIN : want), "length %zu (decided at %zu): got %d",
		      k, at, r);
		if (r >= 0)
			CHECK(name, strcmp(out, want_name ? want_name : "") == 0, "name '%s'", out);
	}
}

/* ---- ClientHellos from OpenSSL ---- */

/* The first flight of an OpenSSL client limited to versions min..max. */
static size_t openssl_hello(struct buf *b, const char *host, int min, int max)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	BIO *rbio, *wbio;
	SSL *ssl;
	int n;

	assert_non_null(ctx);
	assert_int_equal(SSL_CTX_set_min_proto_version(ctx, min), 1);
	assert_int_equal(SSL_CTX_set_max_proto_version(ctx, max), 1);
	ssl = SSL_new(ctx);
	assert_non_null(ssl);
	rbio = BIO_new(BIO_s_mem());
	wbio = BIO_new(BIO_s_mem());
	assert_true(rbio && wbio);
	SSL_set_bio(ssl, rbio, wbio);
	SSL_set_connect_state(ssl);
	if (host)
		assert_int_equal(SSL_set_tlsext_host_name(ssl, host), 1);
	assert_true(SSL_do_handshake(ssl) <= 0);
	assert_int_equal(SSL_get_error(ssl, -1), SSL_ERROR_WANT_READ);
	b->len = 0;
	n = BIO_read(wbio, b->b, (int)sizeof(b->b));
	assert_true(n > 9);
	b->len = (size_t)n;
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	/* one record, holding one ClientHello and nothing else */
	assert_int_equal(b->b[0], 0x16);
	assert_int_equal(5 + get16(b->b + 3), b->len);
	assert_int_equal(b->b[5], 1);
	return b->len;
}

struct ossl_case {
	const char *name;
	int min, max;
	const char *host, *want;
};

static const struct ossl_case ossl_cases[] = {
    {"TLS 1.2 SNI", TLS1_2_VERSION, TLS1_2_VERSION, "api.example.com", "api.example.com"},
    {"TLS 1.2 no SNI", TLS1_2_VERSION, TLS1_2_VERSION, NULL, NULL},
    {"TLS 1.3 SNI", TLS1_3_VERSION, TLS1_3_VERSION, "Www.Example.ORG", "www.example.org"},
    {"TLS 1.3 no SNI", TLS1_3_VERSION, TLS1_3_VERSION, NULL, NULL},
    {"TLS 1.2-1.3 SNI", TLS1_2_VERSION, TLS1_3_VERSION, "a-b.c_d.example", "a-b.c_d.example"},
    {"TLS 1.2-1.3 no SNI", TLS1_2_VERSION, TLS1_3_VERSION, NULL, NULL},
};

static void test_openssl_hellos(void **state)
{
	struct buf *b = buf_new();
	char out[256];

	(void)state;
	for (size_t i = 0; i < sizeof(ossl_cases) / sizeof(ossl_cases[0]); i++) {
		const struct ossl_case *c = &ossl_cases[i];
		size_t n = openssl_hello(b, c->host, c->min, c->max);
		int want = c->want ? (int)strlen(c->want) : 0;

		run_sni(c->name, b->b, n, n, want, c->want);
		/* what follows the hello is not looked at */
		put(b, "\x17\x03\x03\x00\x01x garbage", 15);
		CHECK(c->name, sni(b->b, b->len, out, sizeof(out)) == want, "with bytes after");
		if (c->want) {
			CHECK(c->name, sni(b->b, n, out, (size_t)want) == -ENOSPC,
			      "no room for NUL");
			CHECK(c->name, sni(b->b, n, out, 0) == -ENOSPC, "outsz 0");
			CHECK(c->name, sni(b->b, n, out, (size_t)want + 1) == want, "just enough");
		}
	}
	free(b);
}

static void test_sniff_tls(void **state)
{
	static const struct {
		const char *in;
		size_t len;
		enum ism_sniff want;
	} cases[] = {
	    {"", 0, ISM_SNIFF_MORE},
	    {"\x16", 1, ISM_SNIFF_MORE},
	    {"\x16\x03", 2, ISM_SNIFF_MORE},
	    {"\x16\x03\x01", 3, ISM_SNIFF_TLS},
	    {"\x16\x03\x00", 3, ISM_SNIFF_TLS},
	    {"\x16\x03\x04\x00", 4, ISM_SNIFF_TLS},
	    {"\x16\x03\x05", 3, ISM_SNIFF_PLAIN},
	    {"\x16\x02\x01", 3, ISM_SNIFF_PLAIN},
	    {"\x16\x02", 2, ISM_SNIFF_PLAIN},
	    {"\x17\x03\x03", 3, ISM_SNIFF_PLAIN},
	    {"\x80\x2e\x01", 3, ISM_SNIFF_PLAIN}, /* SSLv2 hello */
	    {"G", 1, ISM_SNIFF_PLAIN},
	    {"GET / HTTP/1.1\r\n", 16, ISM_SNIFF_PLAIN},
	    {"PRI * HTTP/2.0", 14, ISM_SNIFF_PLAIN},
	    {"PROXY TCP4", 10, ISM_SNIFF_PLAIN},
	};
	struct buf *b = buf_new();
	size_t n, k;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_int_equal(ism_sniff_tls((const uint8_t *)cases[i].in, cases[i].len),
				 cases[i].want);
	n = openssl_hello(b, "h.example", TLS1_2_VERSION, TLS1_3_VERSION);
	for (k = 0; k <= n; k++)
		assert_int_equal(ism_sniff_tls(b->b, k), k < 3 ? ISM_SNIFF_MORE : ISM_SNIFF_TLS);
	free(b);
}

/* Puts the handshake bytes hs[0..n) in records of at most frag bytes. */
static void records(struct buf *out, const uint8_t *hs, size_t n, size_t frag)
{
	out->len = 0;
	for (size_t o = 0; o < n; o += frag) {
		size_t len = n - o < frag ? n - o : frag;

		put8(out, 0x16);
		put16(out, 0x0301);
		put16(out, (unsigned)len);
		put(out, hs + o, len);
	}
}

/* The same hello cut into two records at every point, and into records of 1, 2, 7 bytes. */
static void test_records(void **state)
{
	struct buf *b = buf_new(), *r = buf_new();
	char out[256];
	size_t n, hs, cut;

	(void)state;
	n = openssl_hello(b, "split.example", TLS1_2_VERSION, TLS1_3_VERSION);
	hs = n - 5;
	for (cut = 1; cut < hs; cut++) {
		r->len = 0;
		put8(r, 0x16);
		put16(r, 0x0301);
		put16(r, (unsigned)cut);
		put(r, b->b + 5, cut);
		put8(r, 0x16);
		put16(r, 0x0303);
		put16(r, (unsigned)(hs - cut));
		put(r, b->b + 5 + cut, hs - cut);
		CHECK("two records", sni(r->b, r->len, out, sizeof(out)) == 13, "cut at %zu", cut);
		CHECK("two records", strcmp(out, "split.example") == 0, "cut at %zu: '%s'", cut,
		      out);
		if (cut == 1 || cut == 4 || cut == hs / 2 || cut == hs - 1)
			run_sni("two records, every prefix", r->b, r->len, r->len, 13,
				"split.example");
	}
	for (size_t frag = 1; frag <= 7; frag++) {
		records(r, b->b + 5, hs, frag);
		run_sni("small records", r->b, r->len, r->len, 13, "split.example");
	}
	free(b);
	free(r);
}

/* ---- a ClientHello builder, for the cases OpenSSL would never send ---- */

struct hello {
	int sid_len;	    /* session id bytes */
	int ciphers;	    /* cipher_suites length; 0: one suite (2), NONE: 0 */
	int comp;	    /* compression_methods length; 0: one method (1), NONE: 0 */
	int no_ext;	    /* no extensions block at all */
	const uint8_t *ext; /* the extensions block's contents */
	size_t ext_len;
};

#define NONE (-1)

static unsigned or_default(int v, unsigned dflt)
{
	return v == 0 ? dflt : v == NONE ? 0 : (unsigned)v;
}

/* The handshake message (type, length, body). */
static void hello_hs(struct buf *hs, const struct hello *h)
{
	uint8_t zeros[256] = {0};
	unsigned ciphers = or_default(h->ciphers, 2), comp = or_default(h->comp, 1);
	size_t body = 2 + 32 + 1 + (size_t)h->sid_len + 2 + ciphers + 1 + comp;

	if (!h->no_ext)
		body += 2 + h->ext_len;
	hs->len = 0;
	put8(hs, 1);
	put24(hs, (unsigned)body);
	put16(hs, 0x0303);
	put(hs, zeros, 32);
	put8(hs, (unsigned)h->sid_len);
	put(hs, zeros, (size_t)h->sid_len);
	put16(hs, ciphers);
	for (unsigned i = 0; i < ciphers; i += 2)
		put16(hs, 0x1301);
	put8(hs, comp);
	put(hs, zeros, comp);
	if (!h->no_ext) {
		put16(hs, (unsigned)h->ext_len);
		put(hs, h->ext, h->ext_len);
	}
}

/* A hello in one record (or in records of at most 16384 bytes). */
static void hello_rec(struct buf *out, const struct hello *h)
{
	struct buf *hs = buf_new();

	hello_hs(hs, h);
	records(out, hs->b, hs->len, 16384);
	free(hs);
}

/* A server_name extension with the names given (type 0 each), or raw entries. */
static void ext_sni(struct buf *e, const char *const *names, size_t n)
{
	size_t list = 0;

	for (size_t i = 0; i < n; i++)
		list += 3 + strlen(names[i]);
	put16(e, 0);
	put16(e, (unsigned)(2 + list));
	put16(e, (unsigned)list);
	for (size_t i = 0; i < n; i++) {
		put8(e, 0);
		put16(e, (unsigned)strlen(names[i]));
		put(e, names[i], strlen(names[i]));
	}
}

static void ext_raw(struct buf *e, unsigned type, const void *v, size_t n)
{
	put16(e, type);
	put16(e, (unsigned)n);
	put(e, v, n);
}

#define HELLO(...) (&(struct hello){__VA_ARGS__})

/* Layout of a built hello with no session id: record 0..4, handshake header 5..8, version and
 * random 9..42, session id length 43, cipher suites length 44..45 and one suite 46..47,
 * compression length 48 and one method 49, extensions length 50..51, extensions from 52. */
#define EXT_AT 52

static void test_built_valid(void **state)
{
	static const char *const one[] = {"Mixed.Case.Example"};
	char long_name[256];
	struct buf *e = buf_new(), *r = buf_new();

	(void)state;
	/* TLS 1.2 and older may leave the extensions block out */
	hello_rec(r, HELLO(.no_ext = 1));
	run_sni("no extensions block", r->b, r->len, r->len, 0, NULL);
	hello_rec(r, HELLO(.ext_len = 0));
	run_sni("empty extensions block", r->b, r->len, r->len, 0, NULL);
	hello_rec(r, HELLO(.sid_len = 32, .ciphers = 64, .comp = 2, .no_ext = 1));
	run_sni("session id, 32 suites", r->b, r->len, r->len, 0, NULL);

	/* SNI among other extensions, and a name entry of an unknown type skipped */
	ext_raw(e, 10, "\x00\x02\x00\x1d", 4);
	ext_sni(e, one, 1);
	ext_raw(e, 0xFF01, "\x00", 1);
	ext_raw(e, 21, NULL, 0);
	hello_rec(r, HELLO(.ext = e->b, .ext_len = e->len));
	run_sni("SNI between extensions", r->b, r->len, r->len, 18, "mixed.case.example");
	e->len = 0;
	ext_raw(e, 0, "\x00\x08\x07\x00\x01X\x00\x00\x01y", 10);
	hello_rec(r, HELLO(.ext = e->b, .ext_len = e->len));
	run_sni("unknown name type then a host", r->b, r->len, r->len, 1, "y");
	e->len = 0;
	ext_raw(e, 0, "\x00\x04\x07\x00\x01X", 6);
	hello_rec(r, HELLO(.ext = e->b, .ext_len = e->len));
	run_sni("only an unknown name type", r->b, r->len, r->len, 0, NULL);

	/* the longest name */
	memset(long_name, 'a', sizeof(long_name));
	long_name[255] = '\0';
	e->len = 0;
	ext_sni(e, (const char *const[]){long_name}, 1);
	hello_rec(r, HELLO(.ext = e->b, .ext_len = e->len));
	run_sni("255-byte name", r->b, r->len, r->len, 255, long_name);
	free(e);
	free(r);
}

/* A hello of exactly ISM_SNIFF_MAX_BYTES in one record, one byte more, and one spread over so
 * many records that their headers push it past the limit. */
static void test_built_limits(void **state)
{
	struct buf *e = buf_new(), *r = buf_new(), *hs = buf_new();
	static uint8_t pad[ISM_SNIFF_MAX_BYTES];
	char out[256];
	/* handshake header 4 + body 47 + padding extension of P bytes = 16384 */
	size_t p = 16384 - 4 - 47, bad;

	(void)state;
	ext_raw(e, 21, pad, p);
	hello_rec(r, HELLO(.ext = e->b, .ext_len = e->len));
	assert_int_equal(r->len, ISM_SNIFF_MAX_BYTES);
	assert_int_equal(sni(r->b, r->len, out, sizeof(out)), 0);
	assert_int_equal(sni(r->b, r->len - 1, out, sizeof(out)), -EAGAIN);

	e->len = 0;
	ext_raw(e, 21, pad, p + 1);
	hello_rec(r, HELLO(.ext = e->b, .ext_len = e->len));
	/* the handshake length says so: 5 + 4 + 16381 bytes at the least */
	run_sni("one byte over", r->b, 40, 9, -EINVAL, NULL);

	/* 3000 bytes in records of 1 (6 bytes each): the first record that would end past the
	 * limit is refused from its header */
	e->len = 0;
	ext_raw(e, 21, pad, 3000 - 4 - 47);
	hello_hs(hs, HELLO(.ext = e->b, .ext_len = e->len));
	assert_int_equal(hs->len, 3000);
	records(r, hs->b, hs->len, 1);
	bad = ((ISM_SNIFF_MAX_BYTES - 6) / 6 + 1) * 6;
	assert_int_equal(sni(r->b, bad + 4, out, sizeof(out)), -EAGAIN);
	assert_int_equal(sni(r->b, bad + 5, out, sizeof(out)), -EINVAL);
	assert_int_equal(sni(r->b, r->len, out, sizeof(out)), -EINVAL);
	free(e);
	free(r);
	free(hs);
}

static void test_built_bad(void **state)
{
	static const char *const two[] = {"a.example", "b.example"};
	static const struct {
		const char *s;
		size_t len, bad; /* the first byte refused */
	} names[] = {
	    {"", 0, 0},	     {"a b", 3, 1},	{"a\x7f", 2, 1}, {"a\x80", 2, 1},
	    {"a\x01", 2, 1}, {"a/b\xff", 4, 3}, {"x\0y", 3, 1},
	};
	static const struct {
		const char *name;
		size_t at; /* the byte at - 1 becomes v */
		uint8_t v;
	} rec[] = {
	    {"alert record", 1, 0x15},
	    {"record version 2", 2, 0x02},
	    {"record version 3.5", 3, 0x05},
	};
	struct buf *e = buf_new(), *r = buf_new();
	size_t i;

	(void)state;
	/* record layer */
	hello_rec(r, HELLO(.no_ext = 1));
	for (i = 0; i < sizeof(rec) / sizeof(rec[0]); i++) {
		uint8_t keep = r->b[rec[i].at - 1];

		r->b[rec[i].at - 1] = rec[i].v;
		run_sni(rec[i].name, r->b, r->len, rec[i].at, -EINVAL, NULL);
		r->b[rec[i].at - 1] = keep;
	}
	r->b[3] = 0, r->b[4] = 0;
	run_sni("empty record", r->b, r->len, 5, -EINVAL, NULL);
	r->b[3] = 0x40, r->b[4] = 0x01;
	run_sni("record over 16384", r->b, r->len, 5, -EINVAL, NULL);

	/* handshake layer */
	hello_rec(r, HELLO(.no_ext = 1));
	r->b[5] = 2;
	run_sni("ServerHello", r->b, r->len, 6, -EINVAL, NULL);
	hello_rec(r, HELLO(.sid_len = 33, .no_ext = 1));
	run_sni("session id 33", r->b, r->len, 44, -EINVAL, NULL);
	hello_rec(r, HELLO(.ciphers = NONE, .no_ext = 1));
	run_sni("no cipher suites", r->b, r->len, 46, -EINVAL, NULL);
	hello_rec(r, HELLO(.no_ext = 1));
	r->b[45] = 3;
	run_sni("odd cipher suites length", r->b, r->len, 46, -EINVAL, NULL);
	hello_rec(r, HELLO(.comp = NONE, .no_ext = 1));
	run_sni("no compression method", r->b, r->len, 49, -EINVAL, NULL);
	hello_rec(r, HELLO(.no_ext = 1));
	r->b[45] = 0xFE;
	run_sni("cipher suites overrun the hello", r->b, r->len, 46, -EINVAL, NULL);

	/* extensions */
	ext_raw(e, 10, "\x00\x02\x00\x1d", 4);
	hello_rec(r, HELLO(.ext = e->b, .ext_len = e->len));
	r->b[51] += 1;
	run_sni("extensions length past the hello", r->b, r->len, EXT_AT, -EINVAL, NULL);
	r->b[51] -= 2;
	run_sni("extensions length short of the hello", r->b, r->len, EXT_AT, -EINVAL, NULL);
	r->b[51] += 1;
	r->b[EXT_AT + 3] += 1;
	run_sni("extension past the block", r->b, r->len, EXT_AT + 4, -EINVAL, NULL);
	hello_rec(r, HELLO(.ext = e->b, .ext_len = 3));
	run_sni("3 bytes of extensions", r->b, r->len, EXT_AT + 2, -EINVAL, NULL);

	/* server_name */
	e->len = 0;
	ext_sni(e, two, 1);
	ext_sni(e, two + 1, 1);
	hello_rec(r, HELLO(.ext = e->b, .ext_len = e->len));
	run_sni("two server_name extensions", r->b, r->len, EXT_AT + 18 + 4, -EINVAL, NULL);
	e->len = 0;
	ext_sni(e, two, 2);
	hello_rec(r, HELLO(.ext = e->b, .ext_len = e->len));
	run_sni("two host names", r->b, r->len, EXT_AT + 6 + 12 + 3, -EINVAL, NULL);
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		size_t len = names[i].len;

		e->len = 0;
		put16(e, 0);
		put16(e, (unsigned)(5 + len));
		put16(e, (unsigned)(3 + len));
		put8(e, 0);
		put16(e, (unsigned)len);
		put(e, names[i].s, len);
		hello_rec(r, HELLO(.ext = e->b, .ext_len = e->len));
		/* an empty name is refused from its length, others from the bad byte */
		run_sni(names[i].s, r->b, r->len, EXT_AT + 9 + (len ? names[i].bad + 1 : 0),
			-EINVAL, NULL);
	}
	e->len = 0;
	ext_sni(e, two, 1);
	e->b[5] += 1; /* list length */
	hello_rec(r, HELLO(.ext = e->b, .ext_len = e->len));
	run_sni("name list past the extension", r->b, r->len, EXT_AT + 6, -EINVAL, NULL);
	e->b[5] -= 2;
	hello_rec(r, HELLO(.ext = e->b, .ext_len = e->len));
	run_sni("name list short of the extension", r->b, r->len, EXT_AT + 6, -EINVAL, NULL);
	e->b[5] += 1;
	e->b[8] += 1; /* name length */
	hello_rec(r, HELLO(.ext = e->b, .ext_len = e->len));
	run_sni("name past the list", r->b, r->len, EXT_AT + 9, -EINVAL, NULL);
	e->b[8] -= 2;
	hello_rec(r, HELLO(.ext = e->b, .ext_len = e->len));
	run_sni("name short of the list", r->b, r->len, EXT_AT + 9 + 8 + 1, -EINVAL, NULL);
	e->len = 0;
	ext_raw(e, 0, NULL, 0);
	hello_rec(r, HELLO(.ext = e->b, .ext_len = e->len));
	run_sni("empty server_name", r->b, r->len, EXT_AT + 4, -EINVAL, NULL);
	free(e);
	free(r);
}

/* Offsets of the length fields of a real (OpenSSL) hello, found by walking it. */
struct fields {
	size_t sid, ciphers, comp, exts, sni_ext, sni_list, sni_name_len, last_ext;
};

static void find_fields(const uint8_t *p, size_t n, struct fields *f)
{
	size_t o = 5 + 4 + 2 + 32, end;

	f->sid = o;
	o += 1 + p[o];
	f->ciphers = o;
	o += 2 + get16(p + o);
	f->comp = o;
	o += 1 + p[o];
	f->exts = o;
	end = o + 2 + get16(p + o);
	assert_int_equal(end, n);
	f->sni_ext = f->last_ext = 0;
	for (o += 2; o < end; o += 4 + get16(p + o + 2)) {
		f->last_ext = o;
		if (get16(p + o) == 0)
			f->sni_ext = o;
	}
	assert_int_equal(o, end);
	assert_true(f->sni_ext > 0);
	f->sni_list = f->sni_ext + 4;
	f->sni_name_len = f->sni_list + 3;
}

/* Each length field of a real hello one more and one less than it should be; every byte of
 * it changed, to anything the parser answers with one of its codes, reading only the n bytes. */
static void test_corrupt(void **state)
{
	struct buf *b = buf_new(), *c = buf_new();
	struct fields f;
	char out[256];
	size_t n, i;

	(void)state;
	n = openssl_hello(b, "corrupt.example", TLS1_2_VERSION, TLS1_3_VERSION);
	find_fields(b->b, n, &f);
	{
		const struct {
			const char *name;
			size_t at, width;
		} lens[] = {
		    {"handshake length", 6, 3},
		    {"session id length", f.sid, 1},
		    {"cipher suites length", f.ciphers, 2},
		    {"compression length", f.comp, 1},
		    {"extensions length", f.exts, 2},
		    {"server_name length", f.sni_ext + 2, 2},
		    {"name list length", f.sni_list, 2},
		    {"name length", f.sni_name_len, 2},
		    {"last extension length", f.last_ext + 2, 2},
		};
		for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
			for (int d = -1; d <= 1; d += 2) {
				size_t lo = lens[i].at + lens[i].width - 1;
				int r;

				*c = *b;
				c->b[lo] = (uint8_t)(c->b[lo] + d);
				r = sni(c->b, n, out, sizeof(out));
				CHECK(lens[i].name, r == -EINVAL, "%+d: got %d", d, r);
			}
	}
	for (i = 0; i < n; i++) {
		const uint8_t vals[] = {0x00,
					0xFF,
					(uint8_t)(b->b[i] ^ 1),
					(uint8_t)(b->b[i] + 1),
					(uint8_t)(b->b[i] - 1),
					0x80};

		for (size_t v = 0; v < sizeof(vals); v++) {
			int r;

			*c = *b;
			c->b[i] = vals[v];
			r = sni(c->b, n, out, sizeof(out));
			CHECK("any byte", r == -EINVAL || r == -EAGAIN || (r >= 0 && r <= 255),
			      "byte %zu = 0x%02x: %d", i, vals[v], r);
			if (r >= 0)
				CHECK("any byte", strlen(out) == (size_t)r, "byte %zu: length", i);
		}
	}
	free(b);
	free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sniff_tls),	 cmocka_unit_test(test_openssl_hellos),
	    cmocka_unit_test(test_records),	 cmocka_unit_test(test_built_valid),
	    cmocka_unit_test(test_built_limits), cmocka_unit_test(test_built_bad),
	    cmocka_unit_test(test_corrupt),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
