/* SPDX-License-Identifier: Apache-2.0 */
/* What this build is made of: see master/buildinfo.h. */
#include "master/buildinfo.h"

#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <liburing.h>
#include <nghttp2/nghttp2.h>
#include <openssl/crypto.h>
#include <pcre2.h>
#include <yaml.h>

#include "lib/version.h"
#include "worker/worker.h"

/* "pkg=version ..." of the libraries built against, from pkg-config (the
 * Makefile defines it for this file). */
#ifndef ISM_BUILD_PKGS
#define ISM_BUILD_PKGS ""
#endif
#ifndef ISM_BUILD_CFLAGS
#define ISM_BUILD_CFLAGS ""
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
	snprintf(v->nghttp2, sizeof(v->nghttp2), "%s", nghttp2_version(0)->version_str);
}

bool ism_build_ktls_offered(void)
{
	char ulp[256] = "";
	FILE *f = fopen("/proc/sys/net/ipv4/tcp_available_ulp", "r");

	if (f == NULL)
		return false;
	if (fgets(ulp, sizeof(ulp), f) == NULL)
		ulp[0] = '\0';
	fclose(f);
	/* A space-separated list: "tls" as a word, not inside another. */
	for (char *w = strtok(ulp, " \n"); w != NULL; w = strtok(NULL, " \n"))
		if (strcmp(w, "tls") == 0)
			return true;
	return false;
}

/* A ring feature the probe tried: yes, or refused (why) and what follows. */
static void print_feature(FILE *out, const char *name, int ret, const char *without)
{
	if (ret < 0)
		fprintf(out, "  io_uring %s: refused (%s): %s\n", name, strerror(-ret), without);
	else
		fprintf(out, "  io_uring %s: yes\n", name);
}

static void print_kernel(FILE *out)
{
	struct ism_ring_probe p;
	struct utsname u;

	if (uname(&u) == 0)
		fprintf(out, "Kernel: %s %s %s\n", u.sysname, u.release, u.machine);
	ism_worker_ring_probe(&p);
	if (p.ring < 0) {
		fprintf(out, "  io_uring: not available (%s): workers cannot run\n",
			strerror(-p.ring));
	} else {
		fprintf(out, "  io_uring: available, features 0x%x\n", p.features);
		fprintf(out,
			"  io_uring setup flags SUBMIT_ALL COOP_TASKRUN SINGLE_ISSUER "
			"DEFER_TASKRUN: %s\n",
			p.flags ? "taken" : "refused (workers use a plain ring)");
		print_feature(out, "provided buffer rings", p.buf_ring, "workers cannot run");
		print_feature(out, "multishot receives", p.recv_mshot, "one receive per read");
	}
	fprintf(out, "  kTLS (the \"tls\" upper-layer protocol): %s\n",
		ism_build_ktls_offered()
		    ? "offered (not used by this release: TLS runs in user space)"
		    : "not offered (this release does not use it)");
}

void ism_build_print(FILE *out)
{
	struct ism_build_versions v;
	char built[32];
	int jit = 0;

	ism_build_versions(&v);
	fprintf(out, "isthmus " ISM_VERSION "\n");
	fprintf(out, "Build: %s %s, flags: %s\n",
#ifdef __clang__
		"clang",
#else
		"gcc",
#endif
		__VERSION__, ISM_BUILD_CFLAGS);
	fprintf(out, "Built with: %s\n", ISM_BUILD_PKGS[0] ? ISM_BUILD_PKGS : "(not recorded)");
	fprintf(out, "Running with:\n");
	fprintf(out, "  %s\n", OpenSSL_version(OPENSSL_VERSION));
	pcre2_config(PCRE2_CONFIG_JIT, &jit);
	fprintf(out, "  PCRE2 %s, JIT %s\n", v.pcre2, jit ? "available" : "not available");
	fprintf(out, "  libyaml %s\n", v.libyaml);
#ifdef IO_URING_VERSION_MAJOR
	(void)built;
	fprintf(out, "  liburing %s\n", v.liburing);
#else
	built_version("liburing", built, sizeof(built));
	fprintf(out, "  liburing %s (as built: this liburing tells no version at run time)\n",
		built);
#endif
	fprintf(out, "  libnghttp2 %s\n", v.nghttp2);
	print_kernel(out);
}
