/* What this build is made of: see master/buildinfo.h. */
#include "master/buildinfo.h"

#include <stdio.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <liburing.h>
#include <openssl/crypto.h>
#include <pcre2.h>
#include <yaml.h>

/* "pkg=version ..." of the libraries built against, from pkg-config (the
 * Makefile defines it for this file). */
#ifndef ISM_BUILD_PKGS
#define ISM_BUILD_PKGS ""
#endif

/* The version pkg-config gave at build time for pkg, or "?". */
static void built_version(const char *pkg, char *out, size_t cap)
{
	const char *all = ISM_BUILD_PKGS;
	size_t n = strlen(pkg);

	for (const char *p = all; *p;) {
		size_t len = strcspn(p, " ");

		if (len > n && strncmp(p, pkg, n) == 0 && p[n] == '=') {
			snprintf(out, cap, "%.*s", (int)(len - n - 1), p + n + 1);
			return;
		}
		p += len + (p[len] == ' ');
	}
	snprintf(out, cap, "?");
}

void ism_build_versions(struct ism_build_versions *v)
{
	char pcre[64] = "";

	snprintf(v->openssl, sizeof(v->openssl), "%s", OpenSSL_version(OPENSSL_VERSION_STRING));
	/* "10.42 2022-12-11": the version is the first word. */
	if (pcre2_config(PCRE2_CONFIG_VERSION, pcre) < 0)
		snprintf(pcre, sizeof(pcre), "%d.%d", PCRE2_MAJOR, PCRE2_MINOR);
	snprintf(v->pcre2, sizeof(v->pcre2), "%.*s", (int)strcspn(pcre, " "), pcre);
	snprintf(v->libyaml, sizeof(v->libyaml), "%s", yaml_get_version_string());
#ifdef IO_URING_VERSION_MAJOR
	snprintf(v->liburing, sizeof(v->liburing), "%d.%d", io_uring_major_version(),
		 io_uring_minor_version());
#else
	built_version("liburing", v->liburing, sizeof(v->liburing));
#endif
}
