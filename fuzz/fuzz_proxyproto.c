/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer harness for worker/proxyproto.c and worker/sniff.c: the PROXY header parser, then,
 * on what follows a valid header (or on the whole input), the TLS sniffer and the SNI
 * extractor, as a listener would run them. Besides memory safety (ASan, UBSan) it checks the
 * contract: results stay inside the input, a decided answer never changes as bytes are added
 * (every shorter prefix of a header is 0, of a hello -EAGAIN; once -1 or -EINVAL, always), a
 * header parses the same on its own, no header is undecided at ISM_PP_MAX_LEN bytes, and the
 * fields a header fills are consistent. */
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "worker/proxyproto.h"
#include "worker/sniff.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "fuzz_proxyproto: invariant violated: %s\n", what);
		abort();
	}
}

/* Which prefixes to re-parse: all of them for short inputs, a stride otherwise. */
static size_t stride(size_t n)
{
	return n <= 512 ? 1 : n / 256;
}

static int is_text(const char *s, size_t cap)
{
	const char *end = memchr(s, '\0', cap);

	if (!end)
		return 0;
	for (; s < end; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7F)
			return 0;
	return 1;
}

static void check_fields(const struct ism_pp *pp)
{
	check(pp->version == 1 || pp->version == 2, "version");
	check(pp->local <= 1, "local");
	check(pp->transport == 0 || pp->transport == SOCK_STREAM || pp->transport == SOCK_DGRAM,
	      "transport");
	if (pp->local)
		check(pp->addrlen == 0, "addrlen when local");
	else if (pp->src.ss_family == AF_INET)
		check(pp->addrlen == sizeof(struct sockaddr_in) && pp->dst.ss_family == AF_INET,
		      "AF_INET");
	else
		check(pp->src.ss_family == AF_INET6 && pp->dst.ss_family == AF_INET6 &&
			  pp->addrlen == sizeof(struct sockaddr_in6),
		      "AF_INET6");
	check(is_text(pp->authority, sizeof(pp->authority)), "authority");
	check(is_text(pp->aws_vpce_id, sizeof(pp->aws_vpce_id)), "vpce id");
	check(pp->n_tlvs <= ISM_PP_MAX_TLVS, "n_tlvs");
	check(pp->version == 2 || (pp->n_tlvs == 0 && !pp->has_ssl), "TLVs in v1");
}

static int fuzz_pp(const uint8_t *buf, size_t n)
{
	struct ism_pp pp, pp2;
	int r = ism_pp_parse(buf, n, &pp), seen_bad = 0;

	check(r == -1 || r == 0 || (r > 0 && (size_t)r <= n && r <= ISM_PP_MAX_LEN), "pp ret");
	check(r != 0 || n < ISM_PP_MAX_LEN, "undecided at ISM_PP_MAX_LEN");
	if (r > 0) {
		check_fields(&pp);
		check(ism_pp_parse(buf, (size_t)r, &pp2) == r, "header alone");
		check(memcmp(&pp, &pp2, sizeof(pp)) == 0, "header alone fields");
	}
	for (size_t k = 0; k < n && k < (size_t)ISM_PP_MAX_LEN + 1; k += stride(n)) {
		int rk = ism_pp_parse(buf, k, &pp2);

		if (r > 0)
			check(rk == (k < (size_t)r ? 0 : r), "prefix of a header");
		else if (r == 0)
			check(rk == 0, "prefix of an undecided input");
		else if (r < 0) {
			check(rk == 0 || rk == -1, "prefix of a malformed input");
			check(!seen_bad || rk == -1, "malformed, then not");
			seen_bad |= rk == -1;
		}
	}
	return r;
}

static int sni(const uint8_t *buf, size_t n, char *out, size_t outsz)
{
	int r = ism_sniff_sni(buf, n, out, outsz);

	check(r == -EAGAIN || r == -EINVAL || r == -ENOSPC || (r >= 0 && r <= 255), "sni ret");
	return r;
}

static void fuzz_sniff(const uint8_t *buf, size_t n)
{
	enum ism_sniff s = ism_sniff_tls(buf, n);
	char out[256], out2[256];
	int r = sni(buf, n, out, sizeof(out));

	check(s == ISM_SNIFF_MORE ? n < 3 : s == ism_sniff_tls(buf, n < 3 ? n : 3), "sniff");
	check(r != -ENOSPC, "ENOSPC with 256 bytes");
	if (r >= 0) {
		check(strlen(out) == (size_t)r, "name length");
		for (int i = 0; i < r; i++)
			check(out[i] > 0x20 && out[i] < 0x7F && !(out[i] >= 'A' && out[i] <= 'Z'),
			      "name bytes");
		check(s == ISM_SNIFF_TLS, "a hello that is not TLS");
	}
	if (r > 0) {
		check(sni(buf, n, out2, (size_t)r) == -ENOSPC, "no room for the NUL");
		check(sni(buf, n, out2, (size_t)r + 1) == r && strcmp(out, out2) == 0, "just room");
	}
	for (size_t k = 0; k < n; k += stride(n)) {
		int rk = sni(buf, k, out2, sizeof(out2));

		check(rk == -EAGAIN || rk == r, "a decided prefix changed its answer");
		check(rk < 0 || strcmp(out, out2) == 0, "a prefix changed the name");
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Copy to an exact-sized block so that any read past size is an ASan error whatever
	 * libFuzzer's own buffer looks like. */
	uint8_t *buf = malloc(size ? size : 1);
	int r;

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	r = fuzz_pp(buf, size);
	if (r > 0)
		fuzz_sniff(buf + r, size - (size_t)r);
	fuzz_sniff(buf, size);
	free(buf);
	return 0;
}
