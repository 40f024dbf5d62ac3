/* SPDX-License-Identifier: Apache-2.0 */
/* Whether a route regular expression is one that Istio and Envoy accept (RE2
 * syntax, checked by Istio with Go's regexp and compiled by Envoy with RE2) and
 * that PCRE2, which isthmus compiles it with, reads the same way. Pure: it
 * allocates nothing, keeps no state, and never reads past the length it is
 * given. Any process.
 *
 * Refused, each with the byte offset of the construct: what RE2 refuses
 * (back-references, look-arounds, atomic groups, possessive quantifiers,
 * recursion and subroutine calls, conditionals, callouts, comments, branch
 * reset, (*VERB)s, flags other than i m s U, the escapes RE2 does not know,
 * counted repetitions above 1000 alone or nested, invalid UTF-8); what Istio's
 * validation adds (an empty regex, more than 1024 bytes, \C); and what RE2
 * accepts but PCRE2 refuses or reads differently (a quantifier after an
 * assertion or a flag group, \x{D800}-\x{DFFF}, duplicate or digit-led or
 * over-long group names, \v, octal escapes \1nn-\7nn outside a class, a
 * literal '{' that PCRE2 may read as a quantifier, a '-' in a class that is
 * neither first, last nor a range, [: [. [= that PCRE2 reads as POSIX syntax,
 * \p{..} under (?i), Unicode names PCRE2 10.42 lacks, groups nested deeper
 * than ISM_RE2_MAX_NEST). A NUL byte is refused too (isthmus keeps patterns
 * as C strings).
 *
 * For PCRE2 to read an accepted pattern as RE2 does, compile it with
 *   PCRE2_UTF                  (RE2 reads pattern and subject as UTF-8)
 *   PCRE2_DOLLAR_ENDONLY       ($ without (?m): RE2 matches at the very end
 *                               only, PCRE2 also before a final newline)
 *   PCRE2_ALT_CIRCUMFLEX       ((?m)^: RE2 matches after every \n, PCRE2 not
 *                               after one that ends the subject)
 *   PCRE2_NEVER_BACKSLASH_C    (belt and braces: \C is refused here)
 *   newline PCRE2_NEWLINE_LF   (pcre2_set_newline; RE2's only line end is \n,
 *                               which decides what . and (?m)^ $ do)
 * and without PCRE2_UCP (RE2's \d \w \s \b and [[:name:]] are ASCII-only, as
 * PCRE2's are without it), PCRE2_EXTENDED, PCRE2_DUPNAMES, PCRE2_CASELESS,
 * PCRE2_MULTILINE, PCRE2_DOTALL and PCRE2_UNGREEDY (RE2's defaults are the
 * flags off). The route matcher's PCRE2_ANCHORED | PCRE2_ENDANCHORED is
 * Envoy's full match. (?U), (?i), (?s), (?m) and (?P<name>re) mean the same in
 * both.
 *
 * Accepted constructs that still differ, all on characters an HTTP/1.1 request
 * line or header value rarely or never carries:
 *   \s, \S   PCRE2's \s also matches \x0B (vertical tab); RE2's does not.
 *   (?i) with \w \W or a POSIX class that holds k or s ([[:alpha:]] ...):
 *            RE2 also matches U+017F and U+212A (fold-equivalents of s, k);
 *            PCRE2 does not. (?i) on literals and [a-z] agree.
 *   \p{Script} PCRE2 >= 10.40 matches Script_Extensions, RE2 Script; and the
 *            two use different Unicode versions (PCRE2 10.42: 14.0).
 *   subjects that are not valid UTF-8: pcre2_match returns a negative
 *            PCRE2_ERROR_UTF8_* (no match); RE2 matches them byte-wise.
 *
 * Not modelled: the size of the compiled program. RE2 refuses one larger
 * than its max_mem allows (Envoy: RE2's 8 MiB default; \pL{1000} is too
 * large), and pcre2_compile refuses one over its 64 KiB compiled-size limit
 * (PCRE2_ERROR_PATTERN_TOO_LARGE, link size 2; PCRE2 copies a repeated group
 * once per count, so (?:[a-y][a-y][a-y][a-y][a-y]){1000} is too large for it
 * though RE2 takes it). The loader must still report pcre2_compile's error. */
#ifndef ISM_CONF_RE2SYNTAX_H
#define ISM_CONF_RE2SYNTAX_H

#include <stdbool.h>
#include <stddef.h>

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>

/* Istio refuses a regex longer than this (pkg/config/validation). */
#define ISM_RE2_MAX_LEN 1024
/* RE2's largest count in {n,m}, and the largest product of nested counts. */
#define ISM_RE2_MAX_REPEAT 1000
/* Deepest group nesting accepted: PCRE2 10.42 refuses a little deeper (its
 * default parens nest limit is 250, reached earlier by its parser). */
#define ISM_RE2_MAX_NEST 200

/* Checks the pattern pat (len bytes, not NUL-terminated). Returns 0 when it is
 * accepted; otherwise -EINVAL with *err_off the byte offset (< len, or 0 for an
 * empty pattern, or ISM_RE2_MAX_LEN for one too long) of the first refused
 * construct and *why a short static English reason. err_off and why may be
 * NULL. */
int ism_re2_check(const char *pat, size_t len, size_t *err_off, const char **why);

/* Compiles a pattern ism_re2_check accepted the way RE2 reads it (the options
 * above), allocated through cctx's general context (whose newline is set to
 * LF): anchored at both ends, as Envoy's full match of a route's condition, or
 * not, to be searched for, as Envoy's regex_rewrite does. NULL with *err and
 * *off as pcre2_compile gives them. */
pcre2_code *ism_re2_compile(const char *pat, size_t len, bool anchored, pcre2_compile_context *cctx,
			    int *err, size_t *off);

#endif
