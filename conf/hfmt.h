/* SPDX-License-Identifier: Apache-2.0 */
/* Header values with Envoy's command operators (Istio's VirtualService
 * headers set and add, which Envoy formats for each request): parsed at load
 * into the ism_hval_part pieces shm/table-t.h describes; the workers give the
 * operators their values. %HOSTNAME% and %ENVIRONMENT(NAME)% are read here,
 * once. Pure apart from those two: allocates nothing, never reads past the
 * length it is given. Any process. */
#ifndef ISM_CONF_HFMT_H
#define ISM_CONF_HFMT_H

#include <stdbool.h>
#include <stddef.h>

#include "shm/table-t.h"

/* Whether value s (len bytes) has a command operator, which ism_hval_parse
 * then must read; false: plain text, "%%" being a '%'. */
bool ism_hval_dynamic(const char *s, size_t len);

/* Parses s (len bytes) into at most cap pieces (parts may be NULL when cap
 * is 0; text and names point into s, or at the values of %HOSTNAME% and
 * %ENVIRONMENT()%) and returns how many it has: more than cap means call
 * again with room. On an error returns -1 and err (errlen bytes) names the
 * operator and its offset; an operator Envoy has and isthmus does not is
 * "not implemented yet". */
int ism_hval_parse(const char *s, size_t len, struct ism_hval_part *parts, size_t cap, char *err,
		   size_t errlen);

struct ism_fmt_tok;

/* The kind of operator t when it is one of the header values' without an
 * argument whose value comes with the request (not %HOSTNAME%); -1 when not:
 * the access log takes the connection's and the certificate's from here. */
int ism_hval_kind_of(const struct ism_fmt_tok *t);

/* The system's host name, read once (%HOSTNAME%; "-" when unknown). */
const char *ism_hostname(void);

#endif
