/* SPDX-License-Identifier: Apache-2.0 */
/* Request-path normalisation as Istio's meshConfig.pathNormalization does it with Envoy (route
 * matching and the path forwarded upstream both use the result). Pure, allocation-free, never
 * reads past len; safe in any process.
 *
 * The input is an origin-form path without its query (the caller splits at '?' and never passes
 * '*' or an authority-form target). What each mode does, in this order:
 *
 * DECODE_AND_MERGE_SLASHES first decodes %2F and %2f to '/' and %5C and %5c to '\' (Envoy's
 *   path_with_escaped_slashes_action UNESCAPE_AND_FORWARD, applied before the rest);
 * BASE, MERGE_SLASHES and DECODE_AND_MERGE_SLASHES then apply Envoy's normalize_path (RFC 3986
 *   normalisation as Chromium's URL library does it):
 *   - "%HH" is decoded when it encodes an unreserved character (ALPHA, DIGIT, '-', '.', '_',
 *     '~'), once: "%2541" becomes "%2541", not "%41" nor "A";
 *   - every other "%HH" is kept as sent, hex case included ("%3a" stays "%3a", "%2F" stays
 *     "%2F" in BASE): Envoy copies them unchanged in case the server is sensitive to that case;
 *   - '\' becomes '/';
 *   - dot segments ("." and "..", written with '.' or "%2E"/"%2e", ended by '/', '\' or the end
 *     of the path) are removed as RFC 3986 5.2.4 says; ".." at the root stays at the root
 *     ("/../a" is "/a"); a path ending in a dot segment keeps its final '/' ("/a/." is "/a/",
 *     "/a/b/.." is "/a/");
 *   - a byte that may not appear in a path is percent-encoded with upper-case hex ("%7C" for
 *     '|'): controls 0x01-0x1F, space, '"', '#', '<', '>', '?', '^', '`', '{', '|', '}', 0x7F
 *     and 0x80-0xFF. The HTTP/1 parser lets only '"', '<', '>', '^', '`', '{', '|' and '}' of
 *     these through; they are the only reason the output can be longer than the input;
 *   - refused (-EINVAL, the caller answers 400): "%00" or a NUL byte, and any '%' not followed
 *     by two hex digits (Envoy passes those through; Envoy's newer header validator and this
 *     appliance refuse them), and a path whose first byte is neither '/' nor '\';
 * MERGE_SLASHES and DECODE_AND_MERGE_SLASHES finally merge every run of '/' into one (after the
 *   dot segments, as Envoy does: "/a//../b" is "/a/b"); a run at the start or the end is kept
 *   as one '/' (Envoy leaves a path made only of slashes, "//", as it is; here it is "/").
 * NONE changes nothing and refuses nothing: the output is a copy of the input.
 *
 * The result of every mode is a fixed point: normalising it again under the same mode gives it
 * back unchanged. */
#ifndef ISM_WORKER_PATHNORM_H
#define ISM_WORKER_PATHNORM_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "shm/table-t.h" /* enum ism_pathnorm_mode */

/* The capacity that always suffices for the normalised form of a len-byte path: every byte
 * percent-encoded at worst. Without any byte listed above as percent-encoded, len suffices. */
#define ISM_PATHNORM_MAX_OUT(len) (3 * (size_t)(len))

/* The fast path: true when ism_pathnorm would return in[0..len) unchanged, so the caller can
 * keep the path where it is and skip the copy. One scan, no writes; conservative (false for
 * some paths that normalise to themselves, e.g. any path holding '%'). Always true for NONE;
 * false for an empty path or one not starting with '/'. */
bool ism_pathnorm_is_normal(enum ism_pathnorm_mode mode, const char *in, size_t len);

/* Writes the normalised form of in[0..len) under mode into out[0..cap) and returns its length,
 * or a negative errno with nothing written to out (-EINVAL is decided first):
 *   -EINVAL  the path is refused (above), len is above SSIZE_MAX / 3, or mode is not one of
 *            the enum;
 *   -ENOSPC  cap < len + 2 * (number of input bytes to percent-encode); ISM_PATHNORM_MAX_OUT(len)
 *            always suffices, and len suffices for a path with no such byte.
 * out == in (in-place) is allowed, with the same capacity rule (cap counts from in); any other
 * overlap of the two ranges is not. The output is not NUL-terminated. */
ssize_t ism_pathnorm(enum ism_pathnorm_mode mode, const char *in, size_t len, char *out,
		     size_t cap);

#endif
