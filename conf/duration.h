/* SPDX-License-Identifier: Apache-2.0 */
/* Private to conf/: Go's duration syntax (time.ParseDuration's "1h2m3.5s"),
 * read once for the file's durations (conf/fields.c) and CEL's duration()
 * (conf/celeval.c). What differs between them is an argument: the sign, how
 * many digits are kept; the sums, their bounds and their rounding are each
 * caller's. */
#ifndef ISM_CONF_DURATION_H
#define ISM_CONF_DURATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a reader of durations takes. */
struct ism_dur_syntax {
	bool minus;	    /* a leading '-' as well as '+' */
	uint64_t ip_max;    /* an integer part past it is ip_over */
	uint64_t frac_max;  /* a fraction's digits are kept while their value */
	size_t frac_digits; /* is at most frac_max and they are at most this many */
};

/* One component, "1.5h": ip + frac / 10^frac_n units of unit_ns. */
struct ism_dur_part {
	uint64_t ip;	  /* meaningless when ip_over */
	bool ip_over;	  /* the integer part is past ip_max */
	uint64_t frac;	  /* the fraction's first frac_n digits */
	size_t frac_n;	  /* the rest are dropped */
	uint64_t unit_ns; /* ns us µs μs ms s m h */
};

struct ism_dur_scan {
	const struct ism_dur_syntax *syn;
	const char *p;
	size_t len, k;
};

/* Starts reading p[0..len) (not NUL-terminated) as syn says, past its sign
 * (*neg for '-'): 0, or -EINVAL for a text that is empty past it. A text of
 * "0" alone (its sign aside) has no component. */
int ism_dur_begin(struct ism_dur_scan *s, const struct ism_dur_syntax *syn, const char *p,
		  size_t len, bool *neg);
/* The next component: 1 with *part, 0 at the end of the text, -EINVAL for
 * text that is no <digits>[.<digits>]<unit> with a digit on either side of
 * the '.'. Syntax is said first: a component whose integer part is too long
 * and whose unit is unknown is -EINVAL. */
int ism_dur_next(struct ism_dur_scan *s, struct ism_dur_part *part);

#endif
