/* SPDX-License-Identifier: Apache-2.0 */
#include "worker/grpcweb.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/ascii.h"
#include "lib/base64.h"
#include "worker/policy.h"

void ism_gw_free(struct ism_gw *g)
{
	if (g == NULL)
		return;
	ism_buf_free(&g->buf);
	ism_buf_free(&g->trl);
	ism_buf_free(&g->head);
	ism_buf_free(&g->msg);
	free(g);
}

/* The media type of a field value: up to ';', whitespace trimmed. */
static size_t media_len(const char *v, size_t len)
{
	const char *semi = memchr(v, ';', len);
	size_t n = semi ? (size_t)(semi - v) : len;

	while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
		n--;
	return n;
}

static bool media_is(const char *v, size_t n, const char *type)
{
	return n == strlen(type) && strncasecmp(v, type, n) == 0;
}

uint8_t ism_gw_request(const struct ism_http_header *h, size_t n)
{
	uint8_t flags = 0;

	for (size_t i = 0; i < n; i++) {
		size_t m = media_len(h[i].value, h[i].value_len);

		if (ism_http_header_is(&h[i], "content-type")) {
			if (media_is(h[i].value, m, "application/grpc-web") ||
			    media_is(h[i].value, m, "application/grpc-web+proto"))
				flags |= ISM_GW_ON;
			else if (media_is(h[i].value, m, "application/grpc-web-text") ||
				 media_is(h[i].value, m, "application/grpc-web-text+proto"))
				flags |= ISM_GW_ON | ISM_GW_TEXT_IN;
		} else if (ism_http_header_is(&h[i], "accept") &&
			   (media_is(h[i].value, m, "application/grpc-web-text") ||
			    media_is(h[i].value, m, "application/grpc-web-text+proto"))) {
			flags |= ISM_GW_TEXT_OUT;
		}
	}
	return flags & ISM_GW_ON ? flags : 0;
}

bool ism_gw_transform(int status, const struct ism_http_header *h, size_t n, bool done)
{
	const struct ism_http_header *ct = ism_http_field(h, n, "content-type", 12);
	size_t m = ct != NULL ? media_len(ct->value, ct->value_len) : 0;

	if (done)
		return false;
	if (status != 200 || ct == NULL)
		return true;
	return !ism_http_grpc_type(ct->value, ct->value_len) &&
	       !media_is(ct->value, m, "application/grpc-web") &&
	       !media_is(ct->value, m, "application/grpc-web+proto");
}

int ism_grpc_error_fields(const char *ct, const char *gs, const struct ism_http_header *h, size_t n,
			  const char *msg, size_t len, bool with_msg, struct ism_buf *out)
{
	static const char hex[] = "0123456789ABCDEF";
	int ret = 0;
	char *v;
	size_t k = 0;

	/* Ours first: a head of many fields cut at the bound loses the
	 * upstream's last ones, never these. */
	ret |= ism_buf_put_pair(out, "content-type", 12, ct, strlen(ct));
	ret |= ism_buf_put_pair(out, "grpc-status", 11, gs, strlen(gs));
	if (ret)
		return -ENOMEM;
	if (with_msg) {
		/* grpc-message: its room at the worst (every byte escaped), then
		 * filled */
		if (ism_buf_put_pair(out, "grpc-message", 12, "", 0) < 0 ||
		    ism_buf_reserve(out, (uint32_t)(3 * len), UINT32_MAX) < 0)
			return -ENOMEM;
		v = out->p + out->len - 1; /* over the value's NUL */
		for (size_t i = 0; i < len; i++) {
			uint8_t c = (uint8_t)msg[i];

			if (c < 0x20 || c >= 0x7e || c == '%') {
				v[k++] = '%';
				v[k++] = hex[c >> 4];
				v[k++] = hex[c & 15];
			} else {
				v[k++] = (char)c;
			}
		}
		v[k] = '\0';
		out->len += (uint32_t)k;
	}
	for (size_t i = 0; i < n; i++)
		if (!ism_http_header_is(&h[i], "content-length") &&
		    !ism_http_header_is(&h[i], "transfer-encoding") &&
		    !ism_http_header_is(&h[i], "content-type") &&
		    !ism_http_header_is(&h[i], "grpc-status") &&
		    !(with_msg && ism_http_header_is(&h[i], "grpc-message")))
			ret |= ism_buf_put_pair(out, h[i].name, h[i].name_len, h[i].value,
						h[i].value_len);
	return ret ? -ENOMEM : 0;
}

int ism_gw_error_fields(uint8_t flags, int status, const struct ism_http_header *h, size_t n,
			const char *body, size_t len, struct ism_buf *out)
{
	char gs[21];

	gs[ism_fmt_num(gs, (uint64_t)ism_http_to_grpc(status), 10)] = '\0';
	return ism_grpc_error_fields(ism_gw_content_type(flags), gs, h, n, body, len, true, out);
}

void ism_gw_request_fields(struct ism_http_header *h, size_t *n, size_t cap)
{
	size_t k = 0;
	bool accepts = false;

	for (size_t i = 0; i < *n; i++) {
		if (ism_http_header_is(&h[i], "content-length"))
			continue;
		h[k] = h[i];
		if (ism_http_header_is(&h[k], "content-type")) {
			h[k].value = "application/grpc";
			h[k].value_len = 16;
		}
		accepts |= ism_http_header_is(&h[k], "grpc-accept-encoding");
		k++;
	}
	/* The client's own stands (Envoy's filter since 1.17). */
	if (!accepts && k < cap)
		h[k++] = (struct ism_http_header){"grpc-accept-encoding", 20,
						  "identity,deflate,gzip", 21};
	*n = k;
}

const char *ism_gw_content_type(uint8_t flags)
{
	return flags & ISM_GW_TEXT_OUT ? "application/grpc-web-text+proto"
				       : "application/grpc-web+proto";
}

int ism_gw_decode(struct ism_gw_b64 *c, const char *in, size_t len, bool final, struct ism_buf *out)
{
	const char *end = in + len;

	if (ism_buf_reserve(out, (uint32_t)(len / 4 * 3 + 3), UINT32_MAX) < 0)
		return -ENOMEM;
	while (in < end) {
		ssize_t n;

		c->carry[c->n++] = *in++;
		if (c->n < 4)
			continue;
		n = ism_b64_decode(c->carry, 4, (unsigned char *)out->p + out->len);
		c->n = 0;
		if (n < 0)
			return -EINVAL;
		out->len += (uint32_t)n;
	}
	return final && c->n != 0 ? -EINVAL : 0;
}

int ism_gw_encode(struct ism_gw_b64 *c, const char *in, size_t len, bool final, struct ism_buf *out)
{
	size_t whole;

	if (ism_buf_reserve(out, (uint32_t)((c->n + len) / 3 * 4 + 4), UINT32_MAX) < 0)
		return -ENOMEM;
	/* The carried bytes and the first of these make a group. */
	while (c->n > 0 && c->n < 3 && len > 0) {
		c->carry[c->n++] = *in++;
		len--;
	}
	if (c->n == 3 || (final && c->n > 0)) {
		out->len += (uint32_t)ism_b64_encode((const unsigned char *)c->carry, c->n,
						     out->p + out->len);
		c->n = 0;
	}
	whole = final ? len : len / 3 * 3;
	out->len += (uint32_t)ism_b64_encode((const unsigned char *)in, whole, out->p + out->len);
	if (len > whole)
		memcpy(c->carry, in + whole, len - whole);
	c->n = (uint8_t)(c->n + len - whole);
	return 0;
}

int ism_gw_trailers(const struct ism_http_header *h, size_t n, struct ism_buf *out)
{
	uint32_t at = out->len, len;
	unsigned char hd[5] = {0x80};
	int ret = ism_buf_append(out, hd, sizeof(hd), UINT32_MAX);

	for (size_t i = 0; i < n && ret == 0; i++) {
		uint32_t from = out->len;

		ret |= ism_buf_append(out, h[i].name, (uint32_t)h[i].name_len, UINT32_MAX);
		for (uint32_t j = from; ret == 0 && j < out->len; j++)
			out->p[j] = ism_lower(out->p[j]);
		ret |= ism_buf_append(out, ":", 1, UINT32_MAX);
		ret |= ism_buf_append(out, h[i].value, (uint32_t)h[i].value_len, UINT32_MAX);
		ret |= ism_buf_append(out, "\r\n", 2, UINT32_MAX);
	}
	if (ret < 0)
		return -ENOMEM;
	len = out->len - at - 5;
	out->p[at + 1] = (char)(len >> 24);
	out->p[at + 2] = (char)(len >> 16);
	out->p[at + 3] = (char)(len >> 8);
	out->p[at + 4] = (char)len;
	return 0;
}
