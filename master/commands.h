/* SPDX-License-Identifier: Apache-2.0 */
/* Private to master/: the control-socket commands (the list is
 * master/cmdlist.h) and the reply buffer they write into. Every command has a
 * text form and, with a trailing "json", a JSON form. Master only. */
#ifndef ISM_MASTER_COMMANDS_H
#define ISM_MASTER_COMMANDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "master/reply.h"

struct ism_master;

/* Serving: not stopping, and ism_master_workers_serve; while an upgrade
 * settles, the old workers serve. */
int ism_master_ready(const struct ism_master *m);
/* Whether a worker of the master's (of the current set, or of the one a reload
 * is replacing) takes connections on a published configuration. */
bool ism_master_workers_serve(const struct ism_master *m);
/* Whether the worker in slot i takes connections on a published configuration. */
bool ism_master_slot_serves(const struct ism_master *m, int i);

struct ism_shm;

/* An endpoint by key "<service>|<address>:<port>" (its id into *id), the
 * address spelled as the keys spell it (inet_ntop's text) or another way: an
 * operator's ("[0:0::1]:80"), or an older build's whose endpoint states an
 * upgrade takes over. */
bool ism_master_ep_find(const struct ism_shm *shm, const char *key, uint32_t *id);

/* Runs one command line and writes its answer. An answer that reports a failure
 * starts with "error:" (or "reload refused"; in JSON, a result other than
 * "ok"), which isthmusctl turns into its exit status. Returns 0, or for a reload, which runs off
 * the loop, the ticket its report will carry (master/reload.h): the answer is then
 * ism_cmd_reload_answer(report, *json), and r is left empty. */
uint64_t ism_cmd_run(struct ism_master *m, const char *line, struct ism_reply *r, int *json);
/* The answer to "reload" (json: "reload json") from the reload's report. */
void ism_cmd_reload_answer(const char *report, int json, struct ism_reply *r);

/* explain METHOD URL [NAME=VALUE]... [from=IP], explain tcp [PORT] [to=IP]
 * [from=IP], explain tls SNI|- [PORT] [to=IP] [from=IP] (args is modified). */
void ism_explain(struct ism_master *m, char *args, struct ism_reply *r);

#endif
