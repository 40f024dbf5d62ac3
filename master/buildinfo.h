/* Private to master/: what this build is made of, and what it runs on, for
 * `isthmus -vv` and the isthmus_build_info metric. Any process. */
#ifndef ISM_MASTER_BUILDINFO_H
#define ISM_MASTER_BUILDINFO_H

#include <stdbool.h>

/* The libraries' versions as this process runs with them; where a library
 * tells none at run time (liburing before 2.4), the version it was built
 * against. */
struct ism_build_versions {
	char openssl[32];
	char pcre2[32];
	char libyaml[32];
	char liburing[32];
};

void ism_build_versions(struct ism_build_versions *v);

#endif
