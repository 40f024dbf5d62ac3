/* SPDX-License-Identifier: Apache-2.0 */
/* What one route regex costs a worker per request under PCRE2's limits: the
 * issue's pathological patterns and ordinary route regexes, against subjects
 * of 32 B, 1 KiB, 8 KiB (the default maxUriBytes) and 32 KiB (the default
 * request header block, for header matches), with the interpreter, the JIT
 * and the DFA matcher, under match and depth limits, compiled as the router
 * compiles them (PCRE2_UTF | PCRE2_ANCHORED | PCRE2_ENDANCHORED) plus the
 * options conf/re2syntax.h recommends. Prints a markdown table: the result
 * (match, no match or the limit error), the median and the largest time of
 * one pcre2_match, and for the default limits the smallest match limit the
 * match needs (binary search). Not part of the build:
 *
 *   cc -O2 -o build/regex_cost bench/regex_cost.c $(pkg-config --cflags --libs libpcre2-8)
 *   build/regex_cost [seconds-per-cell]
 *
 * Times are CPU time of this thread (CLOCK_THREAD_CPUTIME_ID). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define OPTS                                                                                       \
	(PCRE2_UTF | PCRE2_ANCHORED | PCRE2_ENDANCHORED | PCRE2_DOLLAR_ENDONLY |                   \
	 PCRE2_ALT_CIRCUMFLEX | PCRE2_NEVER_BACKSLASH_C)
#define UNSET	   0
#define MAX_REPS   200
#define DFA_WSSIZE 4096

enum engine { INTERP, JIT, JIT_STACK_1M, DFA };

static const char *const engine_names[] = {"interp", "JIT", "JIT+1MiB stack", "DFA"};

struct pattern {
	const char *re;
	/* subject of n bytes into buf */
	void (*subject)(char *buf, size_t n);
	const char *subject_desc;
};

static void slash_a_then_b(char *b, size_t n)
{
	b[0] = '/';
	memset(b + 1, 'a', n - 2);
	b[n - 1] = 'b';
}

static void api_users(char *b, size_t n)
{
	const char *head = "/api/v12/users/";
	size_t h = strlen(head);

	memcpy(b, head, h);
	memset(b + h, 'x', n - h);
}

static void api_users_slash(char *b, size_t n)
{
	api_users(b, n);
	b[n - 4] = '/';
}

static void static_css(char *b, size_t n)
{
	const char *head = "/Static/";

	memcpy(b, head, strlen(head));
	for (size_t k = strlen(head); k < n - 4; k++)
		b[k] = (k % 7 == 0) ? '/' : (k % 5 == 0 ? '.' : 'c');
	memcpy(b + n - 4, ".css", 4);
}

static void static_png(char *b, size_t n)
{
	static_css(b, n);
	memcpy(b + n - 4, ".png", 4);
}

static const struct pattern patterns[] = {
    {"/(a|aa)+", slash_a_then_b, "/aaa...ab"},
    {"/(.*a){12}", slash_a_then_b, "/aaa...ab"},
    {"/api/v[0-9]+/users/[^/]+", api_users, "/api/v12/users/xxx..."},
    {"/api/v[0-9]+/users/[^/]+", api_users_slash, "/api/v12/users/xx/xxx"},
    {"(?i)/static/.*\\.(css|js)", static_css, "/Static/...css"},
    {"(?i)/static/.*\\.(css|js)", static_png, "/Static/...png"},
};

static const size_t lengths[] = {32, 1024, 8192, 32768};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static const char *rc_name(int rc)
{
	static char buf[32];

	if (rc >= 0)
		return "match";
	switch (rc) {
	case PCRE2_ERROR_NOMATCH:
		return "no match";
	case PCRE2_ERROR_MATCHLIMIT:
		return "MATCHLIMIT";
	case PCRE2_ERROR_DEPTHLIMIT:
		return "DEPTHLIMIT";
	case PCRE2_ERROR_HEAPLIMIT:
		return "HEAPLIMIT";
	case PCRE2_ERROR_JIT_STACKLIMIT:
		return "JIT_STACKLIMIT";
	case PCRE2_ERROR_DFA_WSSIZE:
		return "DFA_WSSIZE";
	default:
		snprintf(buf, sizeof(buf), "error %d", rc);
		return buf;
	}
}

struct setup {
	pcre2_code *re;
	pcre2_match_data *md;
	pcre2_match_context *mc;
	pcre2_jit_stack *stack;
	int ws[DFA_WSSIZE];
};

static int match_once(struct setup *s, enum engine e, const char *subj, size_t n)
{
	switch (e) {
	case INTERP:
		return pcre2_match(s->re, (PCRE2_SPTR)subj, n, 0, PCRE2_NO_JIT, s->md, s->mc);
	case JIT:
	case JIT_STACK_1M:
		return pcre2_match(s->re, (PCRE2_SPTR)subj, n, 0, 0, s->md, s->mc);
	case DFA:
		return pcre2_dfa_match(s->re, (PCRE2_SPTR)subj, n, 0, 0, s->md, s->mc, s->ws,
				       DFA_WSSIZE);
	}
	return -1;
}

static void limits(struct setup *s, enum engine e, unsigned match_limit, unsigned depth_limit)
{
	pcre2_set_match_limit(s->mc, match_limit ? match_limit : 10000000);
	pcre2_set_depth_limit(s->mc, depth_limit ? depth_limit : 10000000);
	pcre2_jit_stack_assign(s->mc, NULL, e == JIT_STACK_1M ? s->stack : NULL);
}

/* The smallest match limit under which the match gives the same answer as
 * with the default one; 0 when the default is not enough. */
static unsigned needed_limit(struct setup *s, enum engine e, const char *subj, size_t n)
{
	unsigned lo = 1, hi = 10000000;
	int want;

	limits(s, e, hi, UNSET);
	want = match_once(s, e, subj, n);
	if (want == PCRE2_ERROR_MATCHLIMIT)
		return 0;
	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;

		limits(s, e, mid, UNSET);
		if (match_once(s, e, subj, n) == want)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

static void cell(struct setup *s, const struct pattern *p, size_t n, enum engine e,
		 unsigned match_limit, unsigned depth_limit, double budget, const char *subj)
{
	double t[MAX_REPS], start = now();
	int reps = 0, rc = 0;
	char ml[24], dl[24], need[24] = "";

	limits(s, e, match_limit, depth_limit);
	while (reps < MAX_REPS && (reps < 3 || now() - start < budget)) {
		double t0 = now();

		rc = match_once(s, e, subj, n);
		t[reps++] = now() - t0;
	}
	qsort(t, (size_t)reps, sizeof(t[0]), cmp_double);
	snprintf(ml, sizeof(ml), match_limit ? "%u" : "default", match_limit);
	snprintf(dl, sizeof(dl), depth_limit ? "%u" : "default", depth_limit);
	if (!match_limit && !depth_limit && e != DFA) {
		unsigned k = needed_limit(s, e, subj, n);

		snprintf(need, sizeof(need), k ? "%u" : "> 1e7", k);
	}
	printf("| `%s` | %s | %zu | %s | %s | %s | %s | %.1f | %.1f | %s |\n", p->re,
	       p->subject_desc, n, engine_names[e], ml, dl, rc_name(rc), t[reps / 2] * 1e6,
	       t[reps - 1] * 1e6, need);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	static const unsigned match_limits[] = {1000, 10000, 100000, 1000000, UNSET};
	static const unsigned depth_limits[] = {100, 1000, 10000, 100000};
	double budget = argc > 1 ? atof(argv[1]) : 0.05;
	pcre2_compile_context *cc = pcre2_compile_context_create(NULL);
	char *subj = malloc(32768);

	if (!cc || !subj || pcre2_set_newline(cc, PCRE2_NEWLINE_LF) != 0)
		return 1;
	printf("PCRE2 %d.%d; cell budget %.3f s\n\n", PCRE2_MAJOR, PCRE2_MINOR, budget);
	printf("| pattern | subject | bytes | engine | match limit | depth limit | result | "
	       "median us | max us | needed match limit |\n");
	printf("|---|---|---|---|---|---|---|---|---|---|\n");
	for (size_t pi = 0; pi < sizeof(patterns) / sizeof(patterns[0]); pi++) {
		const struct pattern *p = &patterns[pi];
		struct setup s;
		int err;
		PCRE2_SIZE off;

		memset(&s, 0, sizeof(s));
		s.re = pcre2_compile((PCRE2_SPTR)p->re, strlen(p->re), OPTS, &err, &off, cc);
		if (!s.re || pcre2_jit_compile(s.re, PCRE2_JIT_COMPLETE) != 0)
			return 1;
		s.md = pcre2_match_data_create(32, NULL);
		s.mc = pcre2_match_context_create(NULL);
		s.stack = pcre2_jit_stack_create(32 * 1024, 1024 * 1024, NULL);
		if (!s.md || !s.mc || !s.stack)
			return 1;
		for (size_t li = 0; li < sizeof(lengths) / sizeof(lengths[0]); li++) {
			size_t n = lengths[li];

			p->subject(subj, n);
			for (int e = INTERP; e <= DFA; e++) {
				for (size_t k = 0; k < sizeof(match_limits) / sizeof(*match_limits);
				     k++)
					cell(&s, p, n, (enum engine)e, match_limits[k], UNSET,
					     budget, subj);
				if (e == DFA || e == JIT_STACK_1M)
					continue;
				for (size_t k = 0; k < sizeof(depth_limits) / sizeof(*depth_limits);
				     k++)
					cell(&s, p, n, (enum engine)e, UNSET, depth_limits[k],
					     budget, subj);
			}
		}
		pcre2_jit_stack_free(s.stack);
		pcre2_match_context_free(s.mc);
		pcre2_match_data_free(s.md);
		pcre2_code_free(s.re);
	}
	free(subj);
	pcre2_compile_context_free(cc);
	return 0;
}
