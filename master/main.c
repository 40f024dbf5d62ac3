/* isthmus: command line. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "lib/log.h"
#include "master/master-t.h"
#include "master/master.h"

#define ISM_DEFAULT_CONF "/etc/isthmus/isthmus.yaml"

static void usage(FILE *out)
{
	fprintf(out, "usage: isthmus [-c] [-f FILE] [-d]\n"
		     "  -f FILE   appliance file (default " ISM_DEFAULT_CONF ")\n"
		     "  -c        check the file and exit: 0 when valid, 1 otherwise\n"
		     "  -d        debug logging\n"
		     "  -v        print the version\n"
		     "  -h        this help\n"
		     "Signals: HUP reloads the file, TERM/INT stop gracefully.\n");
}

int main(int argc, char **argv)
{
	struct ism_master_opts opts = {.conf_path = ISM_DEFAULT_CONF, .foreground = 1};
	int check = 0, opt;

	while ((opt = getopt(argc, argv, "cf:dvh")) != -1) {
		switch (opt) {
		case 'c':
			check = 1;
			break;
		case 'f':
			opts.conf_path = optarg;
			break;
		case 'd':
			ism_log_set_level(ISM_LOG_DEBUG);
			break;
		case 'v':
			printf("isthmus " ISM_VERSION "\n");
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (check)
		return ism_master_check(opts.conf_path);
	return ism_master_run(&opts);
}
