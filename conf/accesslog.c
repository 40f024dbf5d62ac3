/* SPDX-License-Identifier: Apache-2.0 */
/* The Appliance's spec.accessLog: a file, standard output or syslog, and the
 * format (json, text, or istio-json with Envoy's format dictionary), whose
 * template is parsed here, once (conf/alog.c); and the log on standard output
 * that Telemetry's envoy provider asks for. */
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/un.h>

#include "conf/alog.h"
#include "conf/model.h"

/* A string of the model as an ism_str (the compiler copies it into the arena). */
static struct ism_str model_str(const char *s)
{
	return (struct ism_str){.p = s, .len = (uint32_t)strlen(s)};
}

/* spec.accessLog.syslog: where (a unix datagram socket or UDP), facility, tag. */
static void parse_syslog(struct ism_vctx *v, const struct ism_node *n, struct ism_alog_conf *l)
{
	static const char *const keys[] = {"address", "facility", "tag", NULL};
	static const char *const facilities[24] = {
	    "kern",   "user",	"mail",	    "daemon", "auth",	"syslog", "lpr",    "news",
	    "uucp",   "cron",	"authpriv", "ftp",    NULL,	NULL,	  NULL,	    NULL,
	    "local0", "local1", "local2",   "local3", "local4", "local5", "local6", "local7"};
	const char *addr = "/dev/log", *fac = "local0", *tag = "isthmus";
	struct sockaddr_un *un = (struct sockaddr_un *)&l->addr;
	size_t old = ism_v_push(v, ".syslog");
	int f;

	ism_v_keys(v, n, keys, NULL);
	ism_v_str(v, n, "address", false, &addr);
	if (addr[0] == '/' && strlen(addr) < sizeof(un->sun_path)) {
		un->sun_family = AF_UNIX;
		memcpy(un->sun_path, addr, strlen(addr) + 1);
		l->addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(addr) + 1);
	} else if (!ism_model_parse_hostport(addr, &l->addr, &l->addrlen)) {
		ism_v_err_key(
		    v, n, "address",
		    "must be a unix socket path (absolute, below 108 bytes), \"IP:port\" or "
		    "\"[IPv6]:port\" (UDP)");
	}
	l->address = model_str(addr);
	ism_v_str(v, n, "facility", false, &fac);
	for (f = 0; f < 24 && (facilities[f] == NULL || strcmp(facilities[f], fac) != 0); f++)
		;
	if (f == 24) {
		ism_v_err_key(
		    v, n, "facility",
		    "must be a syslog facility: kern, user, mail, daemon, auth, syslog, lpr, "
		    "news, uucp, cron, authpriv, ftp, local0 ... local7");
		f = 16;
	}
	l->facility = (uint8_t)f;
	if (ism_v_str(v, n, "tag", false, &tag) > 0 &&
	    (strlen(tag) > 32 || strspn(tag, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
					     "0123456789._-") != strlen(tag)))
		ism_v_err_key(v, n, "tag", "must be 1 to 32 letters, digits, '.', '_' or '-'");
	l->tag = model_str(tag);
	ism_v_pop(v, old);
}

/* spec.accessLog.jsonFormat flattened into the members of Envoy's format
 * dictionary, in document order (an object's or a list's followed by theirs
 * and an END), each with its value's node and its field path below
 * jsonFormat, for the errors the parser finds in the whole. */
struct json_flat {
	struct ism_alog_member *m;
	const struct ism_node **at;
	const char **path;
	size_t n;
	size_t base; /* v->plen at jsonFormat */
};

/* The members value n takes: one; an object's or a list's, theirs and an END. */
static size_t json_count(const struct ism_node *n)
{
	size_t c = n->kind == ISM_NODE_SCALAR ? 1 : 2;

	for (size_t i = 0; n->kind == ISM_NODE_MAP && i < n->n; i++)
		c += json_count(n->pairs[i].value);
	for (size_t i = 0; n->kind == ISM_NODE_SEQ && i < n->n; i++)
		c += json_count(n->items[i]);
	return c;
}

/* Whether s is one of the plain YAML spellings in list (NULL-terminated). */
static bool yaml_word(const char *s, const char *const *list)
{
	for (; *list != NULL; list++)
		if (strcmp(s, *list) == 0)
			return true;
	return false;
}

/* A scalar's member, as Envoy's json_format takes YAML's values: a quoted
 * string, or a plain one that is no other, is a template; a plain null,
 * boolean or number (YAML's core schema) is written as JSON. False on an
 * error (reported). */
static bool json_scalar(struct ism_vctx *v, const struct ism_node *n, struct ism_alog_member *m)
{
	static const char *const trues[] = {"true", "True", "TRUE", NULL};
	static const char *const falses[] = {"false", "False", "FALSE", NULL};
	static const char *const nans[] = {".inf",  ".Inf",  ".INF",  "+.inf", "+.Inf",
					   "+.INF", "-.inf", "-.Inf", "-.INF", ".nan",
					   ".NaN",  ".NAN",  NULL};
	const char *json = NULL;
	char num[64];
	int rc;

	m->kind = ISM_ALOG_M_TEMPLATE;
	m->tmpl = n->str ? n->str : "";
	m->len = n->str ? n->len : 0;
	if (!n->plain)
		return true;
	if (ism_node_is_null(n))
		json = "null";
	else if (yaml_word(n->str, trues))
		json = "true";
	else if (yaml_word(n->str, falses))
		json = "false";
	else if (yaml_word(n->str, nans) ||
		 (rc = ism_alog_json_number(n->str, n->len, num, sizeof(num))) == -ERANGE) {
		ism_v_err(v, n,
			  "%s: a number JSON cannot write (infinite, not a number, or beyond a "
			  "double); quote it for a string",
			  n->str);
		return false;
	} else if (rc > 0 && (json = ism_v_strdup(v, num)) == NULL) {
		return false;
	}
	if (json != NULL) {
		m->kind = ISM_ALOG_M_JSON;
		m->tmpl = json;
		m->len = strlen(json);
	}
	return true;
}

/* Member k of f: key (NULL: a list's item) and its value val, depth objects
 * and lists deep, its own members after it; false on an error (reported). */
static bool json_member(struct ism_vctx *v, struct json_flat *f, const struct ism_node *key,
			const struct ism_node *val, int depth)
{
	struct ism_alog_member *m = &f->m[f->n];
	size_t self = f->n;
	bool ok = true;

	f->at[f->n] = val;
	f->path[f->n] = ism_v_strdup(v, v->path + f->base);
	f->n++;
	*m = (struct ism_alog_member){.key = key ? key->str : NULL, .key_len = key ? key->len : 0};
	if (val->kind == ISM_NODE_SCALAR)
		return json_scalar(v, val, m);
	if (depth >= ISM_ALOG_DICT_DEPTH) {
		ism_v_err(v, val, "objects and lists nested deeper than %d", ISM_ALOG_DICT_DEPTH);
		return false;
	}
	m->kind = val->kind == ISM_NODE_MAP ? ISM_ALOG_M_OBJECT : ISM_ALOG_M_LIST;
	for (size_t i = 0; i < val->n; i++) {
		size_t old = val->kind == ISM_NODE_MAP
				 ? ism_v_push(v, ".%s", val->pairs[i].key->str)
				 : ism_v_push(v, "[%zu]", i);

		ok = json_member(v, f, val->kind == ISM_NODE_MAP ? val->pairs[i].key : NULL,
				 val->kind == ISM_NODE_MAP ? val->pairs[i].value : val->items[i],
				 depth + 1) &&
		     ok;
		ism_v_pop(v, old);
	}
	f->at[f->n] = val;
	f->path[f->n] = f->path[self];
	f->m[f->n++] = (struct ism_alog_member){.kind = ISM_ALOG_M_END};
	return ok;
}

/* spec.accessLog.jsonFormat (jn, the path pushed): the members of Envoy's
 * format dictionary (Istio's accessLogFormat with accessLogEncoding: JSON),
 * nested objects and lists with theirs, into f; false when one is wrong
 * (reported). */
static bool json_members(struct ism_vctx *v, const struct ism_node *jn, struct json_flat *f)
{
	size_t total = 0;
	bool ok = true;

	if (jn->n == 0) {
		ism_v_err(v, jn, "an empty dictionary: name at least one key");
		return false;
	}
	for (size_t i = 0; i < jn->n; i++)
		total += json_count(jn->pairs[i].value);
	f->m = ism_v_alloc(v, total, sizeof(*f->m));
	f->at = ism_v_alloc(v, total, sizeof(*f->at));
	f->path = ism_v_alloc(v, total, sizeof(*f->path));
	f->base = v->plen;
	if (f->m == NULL || f->at == NULL || f->path == NULL)
		return false;
	for (size_t i = 0; i < jn->n; i++) {
		size_t old = ism_v_push(v, ".%s", jn->pairs[i].key->str);

		/* a member deeper than the bound is not walked: f has room */
		ok = json_member(v, f, jn->pairs[i].key, jn->pairs[i].value, 0) && ok;
		ism_v_pop(v, old);
	}
	return ok;
}

/* A format of the access log: its ops written into ops (cap of them; those
 * past it counted); the count, or -1 with *bad and err set. */
typedef int (*alog_parse_fn)(const void *src, struct ism_alog_op *ops, size_t cap, size_t *bad,
			     char *err, size_t errlen);

struct alog_dict {
	const struct ism_alog_member *m;
	size_t n;
};

static int parse_text_src(const void *src, struct ism_alog_op *ops, size_t cap, size_t *bad,
			  char *err, size_t errlen)
{
	const char *text = src;

	*bad = 0;
	return ism_alog_parse(text, strlen(text), ops, cap, err, errlen);
}

static int parse_dict_src(const void *src, struct ism_alog_op *ops, size_t cap, size_t *bad,
			  char *err, size_t errlen)
{
	const struct alog_dict *d = src;

	return ism_alog_parse_dict(d->m, d->n, ops, cap, bad, err, errlen);
}

/* l's ops from src, parsed twice (count, then fill): false on an error in src
 * (*bad and err tell it), or without memory (reported). */
static bool alog_ops(struct ism_vctx *v, struct ism_alog_conf *l, alog_parse_fn parse,
		     const void *src, size_t *bad, char *err, size_t errlen)
{
	int count = parse(src, NULL, 0, bad, err, errlen);
	struct ism_alog_op *ops;

	if (count < 0)
		return false;
	ops = ism_v_alloc(v, (size_t)count, sizeof(*ops));
	if (ops == NULL)
		return true;
	l->n_ops = (uint32_t)parse(src, ops, (size_t)count, bad, err, errlen);
	l->ops = ops;
	return true;
}

/* The parsed dictionary of format: istio-json: jsonFormat's, or Istio's default. */
static void parse_log_dict(struct ism_vctx *v, const struct ism_node *n, struct ism_alog_conf *l)
{
	const struct ism_node *jn = ism_v_node(v, n, "jsonFormat", false, ISM_NODE_MAP);
	struct alog_dict d = {ism_alog_default_json, ism_alog_default_json_len};
	struct json_flat f = {0};
	size_t bad = 0, old;
	char err[256];
	bool ok;

	if (jn != NULL) {
		old = ism_v_push(v, ".jsonFormat");
		ok = json_members(v, jn, &f);
		ism_v_pop(v, old);
		if (!ok)
			return;
		d = (struct alog_dict){f.m, f.n};
	}
	if (alog_ops(v, l, parse_dict_src, &d, &bad, err, sizeof(err)))
		return;
	if (jn == NULL) {
		old = ism_v_push(v, ".jsonFormat.%s", d.m[bad].key);
		ism_v_err(v, n, "%s", err);
	} else {
		old = ism_v_push(v, ".jsonFormat%s", f.path[bad] ? f.path[bad] : "");
		ism_v_err(v, f.at[bad], "%s", err);
	}
	ism_v_pop(v, old);
}

/* spec.accessLog.format, textFormat and jsonFormat: the template is parsed
 * here, once. */
static void parse_log_format(struct ism_vctx *v, const struct ism_node *n, struct ism_alog_conf *l)
{
	static const char *const formats[] = {"json", "text", "istio-json", NULL};
	const struct ism_node *tn = ism_node_get(n, "textFormat", NULL);
	const char *fmt = "json", *text = ism_alog_default_text;
	size_t bad;
	char err[256];

	if (ism_v_enum(v, n, "format", formats, NULL, &fmt) < 0)
		return;
	l->format = strcmp(fmt, "text") == 0	     ? ISM_ALOG_TEXT
		    : strcmp(fmt, "istio-json") == 0 ? ISM_ALOG_DICT
						     : ISM_ALOG_JSON;
	if (tn != NULL && ism_v_str(v, n, "textFormat", false, &text) <= 0)
		return;
	if (tn != NULL && l->format != ISM_ALOG_TEXT) {
		ism_v_err_key(v, n, "textFormat", "needs format: text");
		return;
	}
	if (ism_node_get(n, "jsonFormat", NULL) != NULL && l->format != ISM_ALOG_DICT) {
		ism_v_err_key(v, n, "jsonFormat", "needs format: istio-json");
		return;
	}
	if (l->format == ISM_ALOG_DICT)
		parse_log_dict(v, n, l);
	if (l->format == ISM_ALOG_TEXT &&
	    !alog_ops(v, l, parse_text_src, text, &bad, err, sizeof(err))) {
		size_t old = ism_v_push(v, ".textFormat");

		ism_v_err(v, tn, "%s", err);
		ism_v_pop(v, old);
	}
}

/* spec.accessLog (n): a file (path, "-" for standard output) or syslog, and the format. */
static void parse_access_log(struct ism_vctx *v, const struct ism_node *n, struct ism_alog_conf *l)
{
	static const char *const keys[] = {"path",	 "syslog",     "format",
					   "textFormat", "jsonFormat", NULL};
	const struct ism_node *sl;
	const char *path = NULL;

	ism_v_keys(v, n, keys, NULL);
	if (ism_node_get(n, "syslog", NULL) == NULL) {
		if (ism_v_str(v, n, "path", true, &path) > 0) {
			l->dest = strcmp(path, "-") == 0 ? ISM_ALOG_STDOUT : ISM_ALOG_FILE;
			l->path = model_str(path);
		}
	} else if (ism_node_get(n, "path", NULL) != NULL) {
		ism_model_key_err(v, n, "syslog",
				  "path and syslog exclude each other: one destination");
	} else if ((sl = ism_v_node(v, n, "syslog", false, ISM_NODE_MAP)) != NULL) {
		l->dest = ISM_ALOG_SYSLOG;
		parse_syslog(v, sl, l);
	}
	parse_log_format(v, n, l);
}

void ism_model_parse_access_log(struct ism_vctx *v, const struct ism_node *spec,
				struct ism_alog_conf *l)
{
	const struct ism_node *n = ism_v_node(v, spec, "accessLog", false, ISM_NODE_MAP);
	size_t old;

	if (n == NULL)
		return;
	old = ism_v_push(v, ".accessLog");
	parse_access_log(v, n, l);
	ism_v_pop(v, old);
}

const char *ism_conf_app_field_at(const struct ism_conf *conf, enum ism_app_field f, int *line,
				  int *col)
{
	const struct ism_node *at = NULL;

	switch (f) {
	case ISM_APP_ACCESS_LOG_PATH:
		at = conf->app.access_log_at;
		break;
	case ISM_APP_USER:
		at = conf->app.user_at;
		break;
	case ISM_APP_GROUP:
		at = conf->app.group_at;
		break;
	case ISM_APP_CONTROL_SOCKET:
		at = conf->app.control_socket_at;
		break;
	case ISM_APP_PID_FILE:
		at = conf->app.pid_file_at;
		break;
	case ISM_APP_LISTEN_ADDRESS:
		at = conf->app.listen_at;
		break;
	case ISM_APP_ADMIN_ADDRESS:
		at = conf->app.admin_at;
		break;
	}

	*line = at != NULL ? at->line : 0;
	*col = at != NULL ? at->col : 0;
	return conf->app.r.label;
}

void ism_model_alog_stdout(struct ism_vctx *v, struct ism_alog_conf *l)
{
	size_t bad;
	char err[256];

	memset(l, 0, sizeof(*l));
	l->dest = ISM_ALOG_STDOUT;
	l->format = ISM_ALOG_TEXT;
	alog_ops(v, l, parse_text_src, ism_alog_default_text, &bad, err, sizeof(err));
}
