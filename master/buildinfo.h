/* SPDX-License-Identifier: Apache-2.0 */
/* Private to master/: what this build is made of, and what it runs on, for
 * `isthmus -vv` and the isthmus_build_info metric. Any process. */
#ifndef ISM_MASTER_BUILDINFO_H
#define ISM_MASTER_BUILDINFO_H

#include <stdbool.h>
#include <stdio.h>

/* The libraries' versions as this process runs with them; where a library
 * tells none at run time (liburing before 2.4), the version it was built
 * against. */
struct ism_build_versions {
	char openssl[32];
	char pcre2[32];
	char libyaml[32];
	char liburing[32];
	char nghttp2[32];
};

void ism_build_versions(struct ism_build_versions *v);

/* Whether the kernel offers kTLS (the "tls" upper-layer protocol). */
bool ism_build_ktls_offered(void);

/* isthmus -vv: the release, the compiler and flags, each library's version as
 * built and as run, and what the kernel offers (io_uring ring flags and
 * provided buffer rings, kTLS), probed now. */
void ism_build_print(FILE *out);

#endif
