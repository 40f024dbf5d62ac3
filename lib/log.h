/* SPDX-License-Identifier: Apache-2.0 */
/* Process-wide logging and clock helpers, used by every process of isthmus.
 *
 * Logging writes one line per call to stderr (which systemd's journal or the
 * terminal collects): "<time> isthmus[pid] <level>: <message>". It never blocks on
 * anything but the write(2) itself; stderr is a pipe or a tty. */
#ifndef ISM_LIB_LOG_H
#define ISM_LIB_LOG_H

#include <stddef.h>
#include <stdint.h>

enum ism_log_level {
	ISM_LOG_ERR = 3,
	ISM_LOG_WARN = 4,
	ISM_LOG_NOTICE = 5,
	ISM_LOG_INFO = 6,
	ISM_LOG_DEBUG = 7,
};

/* Lines above this level are dropped. Default ISM_LOG_INFO. */
void ism_log_set_level(enum ism_log_level level);
/* A short role shown in each line ("master", "worker 3"); copied. */
void ism_log_set_role(const char *role);
void ism_log(enum ism_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Each non-empty line of text as a record of its own (a reload's errors):
 * every line has its time, process and level, none is cut at the first. */
void ism_log_lines(enum ism_log_level level, const char *text);
/* src into dst (cap bytes, NUL-terminated, cut short if need be), each control
 * byte (below 0x20 but TAB, and DEL) written \xNN: text from elsewhere (a
 * fetched document, a server's answer) in a message cannot start a line of
 * its own nor drive a terminal. ism_log and the configuration's diagnostics
 * write their messages so. The length written. */
size_t ism_log_escape(char *dst, size_t cap, const char *src);

#define ism_err(...)	ism_log(ISM_LOG_ERR, __VA_ARGS__)
#define ism_warn(...)	ism_log(ISM_LOG_WARN, __VA_ARGS__)
#define ism_notice(...) ism_log(ISM_LOG_NOTICE, __VA_ARGS__)
#define ism_info(...)	ism_log(ISM_LOG_INFO, __VA_ARGS__)
#define ism_debug(...)	ism_log(ISM_LOG_DEBUG, __VA_ARGS__)

/* Monotonic milliseconds (CLOCK_MONOTONIC). */
uint64_t ism_now_ms(void);
/* Wall-clock milliseconds since the epoch (CLOCK_REALTIME). */
uint64_t ism_wall_ms(void);
/* Wall ms as "2026-01-02T03:04:05.678Z" (UTC) into buf; the length written
 * (cut to cap - 1). Any process. */
size_t ism_time_iso(uint64_t wall_ms, char *buf, size_t cap);
/* Envoy's %START_TIME(FORMAT)%: wall ms as FORMAT (len bytes) says, in UTC:
 * strftime's conversions, %s the seconds since the epoch, %f and %1f..%9f
 * the fraction of the second in 9 (or 1..9) digits (the milliseconds, then
 * zeros). The length written into buf (cut to cap - 1). */
size_t ism_time_format(const char *fmt, size_t len, uint64_t wall_ms, char *buf, size_t cap);
/* NULL when FORMAT is one ism_time_format takes, else why not; *at: the
 * offset of the conversion at fault. */
const char *ism_time_format_check(const char *fmt, size_t len, size_t *at);
/* Length of an HTTP date (RFC 9110 5.6.7 IMF-fixdate): "Sun, 06 Nov 1994 08:49:37 GMT". */
#define ISM_HTTP_DATE_LEN 29
/* Epoch second sec as an IMF-fixdate into buf (ISM_HTTP_DATE_LEN bytes and a
 * NUL), its names in English whatever the locale. */
void ism_time_http(int64_t sec, char *buf);

/* Always-on invariant check: logs file, line and the expression, then aborts.
 * For what must never happen, not for bad input. */
#define ISM_BUG_ON(cond)                                                                           \
	do {                                                                                       \
		if (__builtin_expect(!!(cond), 0))                                                 \
			ism_bug(__FILE__, __LINE__, #cond);                                        \
	} while (0)
void ism_bug(const char *file, int line, const char *expr) __attribute__((noreturn));

#endif
