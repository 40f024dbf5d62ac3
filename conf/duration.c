/* SPDX-License-Identifier: Apache-2.0 */
/* Go's duration syntax, as time.ParseDuration reads it: an optional sign,
 * then "0" or one or more <decimal><unit>. */
#include <errno.h>
#include <string.h>

#include "conf/duration.h"

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* The unit named by u[0..n), in nanoseconds; 0 for none. */
static uint64_t unit_ns(const char *u, size_t n)
{
	static const struct {
		const char *name;
		uint64_t ns;
	} units[] = {
	    {"ns", 1ull},	    {"us", 1000ull},
	    {"\xc2\xb5s", 1000ull}, /* U+00B5 micro sign */
	    {"\xce\xbcs", 1000ull}, /* U+03BC Greek mu, as Go's time.ParseDuration */
	    {"ms", 1000000ull},	    {"s", 1000000000ull},
	    {"m", 60000000000ull},  {"h", 3600000000000ull},
	};

	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strlen(units[i].name) == n && memcmp(units[i].name, u, n) == 0)
			return units[i].ns;
	return 0;
}

int ism_dur_begin(struct ism_dur_scan *s, const struct ism_dur_syntax *syn, const char *p,
		  size_t len, bool *neg)
{
	*s = (struct ism_dur_scan){.syn = syn, .p = p, .len = len};
	*neg = false;
	if (len > 0 && (p[0] == '+' || (syn->minus && p[0] == '-'))) {
		*neg = p[0] == '-';
		s->k = 1;
	}
	if (s->k == len)
		return -EINVAL;
	if (len - s->k == 1 && p[s->k] == '0')
		s->k = len;
	return 0;
}

/* The integer at the scan's digits, and whether it is past ip_max. */
static void digits_int(struct ism_dur_scan *s, struct ism_dur_part *part)
{
	uint64_t max = s->syn->ip_max;
	unsigned d;

	for (; s->k < s->len && is_digit(s->p[s->k]); s->k++) {
		d = (unsigned)(s->p[s->k] - '0');
		if (part->ip_over || part->ip > (max - d) / 10)
			part->ip_over = true;
		else
			part->ip = part->ip * 10 + d;
	}
}

/* The fraction's digits, as many as the syntax keeps: the first digit that
 * would pass frac_max or frac_digits ends them. */
static void digits_frac(struct ism_dur_scan *s, struct ism_dur_part *part)
{
	const struct ism_dur_syntax *syn = s->syn;
	bool full = false;
	unsigned d;

	for (; s->k < s->len && is_digit(s->p[s->k]); s->k++) {
		d = (unsigned)(s->p[s->k] - '0');
		if (full || part->frac_n == syn->frac_digits ||
		    part->frac > (syn->frac_max - d) / 10) {
			full = true;
		} else {
			part->frac = part->frac * 10 + d;
			part->frac_n++;
		}
	}
}

int ism_dur_next(struct ism_dur_scan *s, struct ism_dur_part *part)
{
	size_t start = s->k, u;

	if (s->k == s->len)
		return 0;
	*part = (struct ism_dur_part){0};
	digits_int(s, part);
	if (s->k < s->len && s->p[s->k] == '.') {
		s->k++;
		digits_frac(s, part);
	}
	/* A digit on one side of the '.' at least. */
	if (s->k == start || (s->k == start + 1 && s->p[start] == '.'))
		return -EINVAL;
	/* The unit is all up to the next number, as Go reads it: "1mss" is no
	 * "1ms" and a component "s". */
	for (u = s->k; s->k < s->len && s->p[s->k] != '.' && !is_digit(s->p[s->k]);)
		s->k++;
	part->unit_ns = unit_ns(s->p + u, s->k - u);
	return part->unit_ns == 0 ? -EINVAL : 1;
}
