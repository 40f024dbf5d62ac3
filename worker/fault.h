/* SPDX-License-Identifier: Apache-2.0 */
/* Fault injection (a route's Istio `fault`, as Envoy's fault filter does it):
 * whether a request is delayed and whether it is aborted, each by its own roll
 * of the worker's random numbers, and the access log's flags for what was
 * done. Pure functions; the stream (worker/stream.c) keeps the timer and
 * answers the abort. Private to worker/. */
#ifndef ISM_WORKER_FAULT_H
#define ISM_WORKER_FAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shm/table-t.h"

/* The body and grpc-message of an abort, as Envoy's. */
#define ISM_FAULT_ABORT_WHY "fault filter abort"

/* The delay of one request: f's fixedDelay when its share hits (rnd uniform
 * 32-bit), else 0. */
uint32_t ism_fault_delay_ms(const struct ism_fault *f, uint32_t rnd);
/* Whether one request is aborted (rnd uniform 32-bit, drawn apart from the
 * delay's: the two are independent, as Envoy's). */
bool ism_fault_aborts(const struct ism_fault *f, uint32_t rnd);
#endif
