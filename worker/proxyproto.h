/* SPDX-License-Identifier: Apache-2.0 */
/* PROXY protocol v1 (text) and v2 (binary) headers, as HAProxy's
 * proxy-protocol.txt specifies them: a pure, incremental, allocation-free
 * parser, and the writer of the headers isthmus sends. Safe in any process; a
 * worker parses the first bytes of a connection accepted on a listener that
 * expects the header, and writes the first bytes of an upstream connection of
 * a cluster with DestinationRule proxyProtocol (the master too, for its
 * active health checks). */
#ifndef ISM_WORKER_PROXYPROTO_H
#define ISM_WORKER_PROXYPROTO_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* the longest header accepted (v2: 16 + payload); longer: malformed */
#define ISM_PP_MAX_LEN	2048
#define ISM_PP_V1_MAX	107 /* the longest v1 line, CRLF included (the spec's limit) */
#define ISM_PP_MAX_TLVS 64  /* TLVs walked per header, SSL sub-TLVs included; more: malformed */

/* v2 TLV types (PP2_TYPE_*) and the subtypes this parser knows. */
enum ism_pp_tlv_kind {
	ISM_PP_TLV_ALPN = 0x01,
	ISM_PP_TLV_AUTHORITY = 0x02, /* the client's SNI: struct ism_pp.authority */
	ISM_PP_TLV_CRC32C = 0x03,    /* checked: a header whose checksum differs is malformed */
	ISM_PP_TLV_NOOP = 0x04,
	ISM_PP_TLV_UNIQUE_ID = 0x05,
	ISM_PP_TLV_SSL = 0x20, /* client, verify, then sub-TLVs (walked, not kept) */
	ISM_PP_TLV_SSL_VERSION = 0x21,
	ISM_PP_TLV_SSL_CN = 0x22,
	ISM_PP_TLV_SSL_CIPHER = 0x23,
	ISM_PP_TLV_SSL_SIG_ALG = 0x24,
	ISM_PP_TLV_SSL_KEY_ALG = 0x25,
	ISM_PP_TLV_NETNS = 0x30,
	ISM_PP_TLV_AWS = 0xEA, /* first value byte: a subtype */
	ISM_PP_TLV_AWS_VPCE_ID = 0x01,
};

/* Bits of struct ism_pp.ssl_client (PP2_CLIENT_*). */
#define ISM_PP_SSL_CLIENT_SSL	    0x01
#define ISM_PP_SSL_CLIENT_CERT_CONN 0x02
#define ISM_PP_SSL_CLIENT_CERT_SESS 0x04

struct ism_pp {
	uint8_t version; /* 1 or 2 */
	uint8_t local; /* v2 LOCAL command, or v1 "UNKNOWN": keep the connection's own addresses */
	uint8_t transport;		  /* SOCK_STREAM / SOCK_DGRAM / 0 (unspec) */
	struct sockaddr_storage src, dst; /* valid when !local: AF_INET or AF_INET6 (AF_UNIX v2
					     addresses: treat as local) */
	socklen_t addrlen;		  /* of src and dst; 0 when local */
	char authority[256];		  /* PP2_TYPE_AUTHORITY, NUL-terminated, "" if absent */
	char aws_vpce_id[64]; /* PP2_TYPE_AWS (0xEA) subtype PP2_SUBTYPE_AWS_VPCE_ID (0x01), "" if
				 absent */
	uint8_t has_ssl;      /* PP2_TYPE_SSL present */
	uint8_t ssl_client;   /* its client field (ISM_PP_SSL_CLIENT_*) */
	uint32_t ssl_verify; /* its verify field (host order; 0: the client certificate verified) */
	uint32_t n_tlvs;     /* TLVs seen (all types, including ones ignored, SSL sub-TLVs too) */
};

/* Parses a PROXY header at the start of p[0..n).
 * Returns > 0: a complete valid header of that many bytes (the caller drops them; bytes after it
 *              are the connection's payload); *out describes it;
 *           0: not enough bytes yet to decide (only while the n bytes are a valid prefix of some
 *              header; never when n >= ISM_PP_MAX_LEN): call again with the same start and more;
 *          -1: malformed — not a PROXY header, or a bad one (the caller closes the connection).
 * *out is meaningful only after a return > 0. Rules beyond the spec's letter, each -1:
 * v1 "UNKNOWN" followed by anything but a space or the CRLF; v1 port numbers with a leading 0;
 * a v2 authority or VPC endpoint id that does not fit its field or holds a control byte; a v2
 * header with two AUTHORITY, SSL, CRC32C or AWS VPCE id TLVs (which one would count is
 * ambiguous). The address block a v2 family declares must fit in the length for LOCAL too, and
 * TLVs follow it. */
int ism_pp_parse(const uint8_t *p, size_t n, struct ism_pp *out);

/* An address a written header names: IPv4 or IPv6, with its port (family
 * AF_UNSPEC: none). */
union ism_pp_addr {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
};

#define ISM_PP_WRITE_MAX ISM_PP_V1_MAX /* the longest header ism_pp_write writes */

/* Writes into out the header of version (1 or 2) saying that the connection
 * comes from src to dst: the PROXY command over TCP, without TLVs (as Envoy's
 * upstream transport socket sends it unless told to pass TLVs on). Returns
 * its length, at most ISM_PP_WRITE_MAX. With src or dst NULL, or of families
 * that differ or are neither AF_INET nor AF_INET6 (the spec has no header for
 * those), the header names no addresses: v1 "PROXY UNKNOWN", v2 LOCAL; the
 * receiver keeps the connection's own. */
size_t ism_pp_write(uint8_t out[ISM_PP_WRITE_MAX], int version, const struct sockaddr *src,
		    const struct sockaddr *dst);

#endif
