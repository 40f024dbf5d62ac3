/* SPDX-License-Identifier: Apache-2.0 */
/* Fault injection (worker/fault.h). */
#include "worker/fault.h"

#include <stdio.h>
#include <string.h>

/* Whether an event of ppm per million happens for rnd: rnd scaled onto
 * [0, 10^6) (multiply and shift, without the bias of a modulo). */
static bool hits(uint32_t ppm, uint32_t rnd)
{
	return ((uint64_t)rnd * 1000000u >> 32) < ppm;
}

uint32_t ism_fault_delay_ms(const struct ism_fault *f, uint32_t rnd)
{
	return f->delay_ms && hits(f->delay_ppm, rnd) ? f->delay_ms : 0;
}

bool ism_fault_aborts(const struct ism_fault *f, uint32_t rnd)
{
	return f->abort_status != 0 && hits(f->abort_ppm, rnd);
}

const char *ism_fault_flags(uint8_t done, const char *flags, char *buf, size_t len)
{
	static const char *const before[] = {"LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR"};
	const char *faults = (done & ISM_FAULT_DELAYED) && (done & ISM_FAULT_ABORTED) ? "DI,FI"
			     : done & ISM_FAULT_DELAYED				      ? "DI"
										      : "FI";
	bool first = false;

	if (done == 0)
		return flags;
	if (flags == NULL) {
		snprintf(buf, len, "%s", faults);
		return buf;
	}
	for (size_t i = 0; i < sizeof(before) / sizeof(before[0]); i++)
		first = first || strcmp(flags, before[i]) == 0;
	snprintf(buf, len, "%s,%s", first ? flags : faults, first ? faults : flags);
	return buf;
}
