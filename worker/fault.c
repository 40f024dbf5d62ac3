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
