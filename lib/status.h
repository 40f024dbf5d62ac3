/* SPDX-License-Identifier: Apache-2.0 */
/* HTTP status codes: the registered ones (IANA's, those Go's http.StatusText
 * names) and their reason phrases. */
#ifndef ISM_LIB_STATUS_H
#define ISM_LIB_STATUS_H

#include <stdbool.h>

/* The reason phrase of a status ("Not Found"), or "Unknown" for one not listed. */
const char *ism_http_reason(int status);
/* Whether status is a registered one (has a reason phrase). */
bool ism_http_status_known(int status);

#endif
