/* SPDX-License-Identifier: Apache-2.0 */
/* isthmus: command line. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "lib/log.h"
#include "lib/version.h"
#include "master/buildinfo.h"
#include "master/master.h"
#include "worker/tls.h"

#define ISM_DEFAULT_CONF "/etc/isthmus/isthmus.yaml"

static void usage(FILE *out)
{
	fprintf(out, "usage: isthmus [-d] [-f FILE]\n"
		     "       isthmus -c [--portable] [-f FILE]\n"
		     "       isthmus -v | -vv | --version | -h | --help\n"
		     "  -f FILE        appliance file (default " ISM_DEFAULT_CONF ")\n"
		     "  -c             check the file and exit: 0 when it would start here, 1\n"
		     "                 otherwise\n"
		     "  --portable     with -c: for another machine: a spec.user or spec.group\n"
		     "                 missing here, an access log the workers cannot write\n"
		     "                 here, the directories above spec.controlSocket and\n"
		     "                 spec.pidFile, and listening addresses this machine does\n"
		     "                 not have, are warnings\n"
		     "  -d             debug logging\n"
		     "  -v, --version  print the version; -vv: also the build, the libraries'\n"
		     "                 versions and what the kernel offers (io_uring, kTLS)\n"
		     "  -h, --help     this help\n"
		     "Signals: HUP reloads the file, USR2 upgrades (executes the binary at its\n"
		     "path, keeping the sockets), USR1 reopens the access log, TERM/INT stop\n"
		     "gracefully (a second one: at once). The control socket's commands:\n"
		     "isthmusctl --help.\n");
}

static const struct option options[] = {
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'v'},
    {"portable", no_argument, NULL, 'p'},
    {NULL, 0, NULL, 0},
};

int main(int argc, char **argv)
{
	struct ism_master_opts opts = {
	    .conf_path = ISM_DEFAULT_CONF, .argv = argv};
	int check = 0, version = 0, portable = 0, opt;

	/* Before anything allocates through OpenSSL (worker/tls.h). */
	ism_tls_mem_init();
	while ((opt = getopt_long(argc, argv, "cf:dvh", options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			check = 1;
			break;
		case 'f':
			opts.conf_path = optarg;
			break;
		case 'p':
			portable = 1;
			break;
		case 'd':
			ism_log_set_level(ISM_LOG_DEBUG);
			opts.debug = 1;
			break;
		case 'v':
			version++;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc || (portable && !check)) {
		usage(stderr);
		return 2;
	}
	if (version == 1)
		printf("isthmus " ISM_VERSION "\n");
	if (version > 1)
		ism_build_print(stdout);
	if (version)
		return 0;
	if (check)
		return ism_master_check(opts.conf_path, portable);
	return ism_master_run(&opts);
}
