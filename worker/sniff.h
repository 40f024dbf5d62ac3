/* SPDX-License-Identifier: Apache-2.0 */
/* First-bytes detection for a listener that takes TLS and plaintext on the same port, and the
 * SNI of a TLS ClientHello (for logs, explain and tests of SNI routing; OpenSSL does the real
 * handshake). Pure, allocation-free, never read past n. Safe in any process. */
#ifndef ISM_WORKER_SNIFF_H
#define ISM_WORKER_SNIFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The most bytes ism_sniff_sni looks at: one full TLS record (16 KiB and its 5-byte header). A
 * ClientHello that does not end within them is malformed. */
#define ISM_SNIFF_MAX_BYTES (16384 + 5)

enum ism_sniff { ISM_SNIFF_MORE = 0, ISM_SNIFF_TLS, ISM_SNIFF_PLAIN };

/* TLS when the bytes start a TLS handshake record: 0x16, then major version 3, minor 0..4 (a
 * ClientHello); PLAIN for anything else (HTTP starts with a token character); MORE while fewer
 * bytes than needed to decide (at most 3 are needed). */
enum ism_sniff ism_sniff_tls(const uint8_t *p, size_t n);

/* Extracts the SNI host name from a TLS ClientHello at p[0..n) (one or more handshake records;
 * the ClientHello may span records). Returns, once the whole ClientHello is present and well
 * formed: > 0 the name length copied into out (NUL-terminated, lower-cased), 0 when it has no
 * SNI (out is then ""), -ENOSPC when outsz cannot hold the name and its NUL (256 always can).
 * Before that: -EAGAIN while more bytes are needed, -EINVAL as soon as the bytes present are
 * malformed: a record that is not handshake or is empty, a message that is not a ClientHello,
 * a length field overrunning the field that holds it, an extension list not ending with the
 * hello, two server_name extensions or host names, a host name that is empty, longer than 255
 * bytes or holds a byte outside printable ASCII, or a hello not ending within
 * ISM_SNIFF_MAX_BYTES. Bytes after the ClientHello are not looked at. */
int ism_sniff_sni(const uint8_t *p, size_t n, char *out, size_t outsz);

/* A host name ism_sniff_sni takes: 1 to ISM_SNI_MAX bytes of printable ASCII. */
#define ISM_SNI_MAX 255
static inline bool ism_sni_byte_ok(uint8_t c)
{
	return c > 0x20 && c < 0x7F;
}

#endif
