/* SPDX-License-Identifier: Apache-2.0 */
/* The control-socket commands: the one list, which the master dispatches on
 * and answers `help` from (master/commands.c), and isthmusctl prints as its
 * usage. Header only, without dependencies: isthmusctl is built from its own
 * file and this one.
 *
 * ISM_CMD_LIST(X) expands X(name, words, args, form, syntax, help) per command:
 *   name    the handler is cmd_<name> in master/commands.c;
 *   words   what the command line starts with (a whole word at its end);
 *   args    whether arguments follow: ISM_CMD_ARGS_NONE, _OPTIONAL, _REQUIRED;
 *   form    its JSON answer (a trailing "json"): ISM_CMD_SHOW, objects and
 *           arrays of its own; ISM_CMD_REPORT, {"result", "lines", "errors"};
 *   syntax  the arguments as help shows them;
 *   help    one line: what the answer holds or the command does. */
#ifndef ISM_MASTER_CMDLIST_H
#define ISM_MASTER_CMDLIST_H

enum ism_cmd_args {
	ISM_CMD_ARGS_NONE = 0,
	ISM_CMD_ARGS_OPTIONAL,
	ISM_CMD_ARGS_REQUIRED,
};

enum ism_cmd_form {
	ISM_CMD_SHOW = 0,
	ISM_CMD_REPORT,
};

#define ISM_CMD_LIST(X)                                                                            \
	X(show_info, "show info", ISM_CMD_ARGS_NONE, ISM_CMD_SHOW, "",                             \
	  "version, generation, workers, readiness, reloads, traffic totals")                      \
	X(show_config, "show config", ISM_CMD_ARGS_NONE, ISM_CMD_SHOW, "",                         \
	  "the file loaded: checksum, generation, when")                                           \
	X(show_workers, "show workers", ISM_CMD_ARGS_NONE, ISM_CMD_SHOW, "",                       \
	  "the workers: pid, generation, draining, heartbeat age, load")                           \
	X(show_clusters, "show clusters", ISM_CMD_ARGS_NONE, ISM_CMD_SHOW, "",                     \
	  "per cluster: policy, endpoints, eligible, priority loads")                              \
	X(show_endpoints, "show endpoints", ISM_CMD_ARGS_OPTIONAL, ISM_CMD_SHOW, "[CLUSTER]",      \
	  "per endpoint: health, ejection, admin state, weight, traffic")                          \
	X(show_routes, "show routes", ISM_CMD_ARGS_NONE, ISM_CMD_SHOW, "",                         \
	  "listeners, virtual hosts and routes in order; tcp and tls routes")                      \
	X(show_events, "show events", ISM_CMD_ARGS_NONE, ISM_CMD_SHOW, "",                         \
	  "the last 256 events, newest last")                                                      \
	X(show_dns, "show dns", ISM_CMD_ARGS_NONE, ISM_CMD_SHOW, "",                               \
	  "the names DNS ServiceEntries resolve: state, addresses, when, next query")              \
	X(resolve, "resolve", ISM_CMD_ARGS_REQUIRED, ISM_CMD_REPORT, "NAME|*",                     \
	  "ask a DNS ServiceEntry name (every name: *) again now")                                 \
	X(set_endpoint, "set endpoint", ISM_CMD_ARGS_REQUIRED, ISM_CMD_REPORT,                     \
	  "ID|KEY state ready|drain|maint | weight N|configured",                                  \
	  "admin state, or weight (0: no new requests)")                                           \
	X(explain, "explain", ISM_CMD_ARGS_REQUIRED, ISM_CMD_REPORT,                               \
	  "METHOD URL [NAME=VALUE]... [from=IP]  |  tcp [PORT] [to=IP] [from=IP]  |  "             \
	  "tls SNI|- [PORT] [to=IP] [from=IP]",                                                    \
	  "what isthmus would do with that request, TCP connection or TLS ClientHello, and why")   \
	X(reload, "reload", ISM_CMD_ARGS_NONE, ISM_CMD_REPORT, "",                                 \
	  "reload the file; answers when it is over")                                              \
	X(help, "help", ISM_CMD_ARGS_NONE, ISM_CMD_SHOW, "", "this list")

#endif
