/* SPDX-License-Identifier: Apache-2.0 */
#include "lib/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The one per-process logging context. */
static struct {
	enum ism_log_level level;
	char role[32];
} log_ctx = {ISM_LOG_INFO, "isthmus"};

void ism_log_set_level(enum ism_log_level level)
{
	log_ctx.level = level;
}

void ism_log_set_role(const char *role)
{
	snprintf(log_ctx.role, sizeof(log_ctx.role), "%s", role);
}

static const char *level_name(enum ism_log_level level)
{
	switch (level) {
	case ISM_LOG_ERR:
		return "error";
	case ISM_LOG_WARN:
		return "warning";
	case ISM_LOG_NOTICE:
		return "notice";
	case ISM_LOG_INFO:
		return "info";
	case ISM_LOG_DEBUG:
		return "debug";
	}
	return "?";
}

size_t ism_log_escape(char *dst, size_t cap, const char *src)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = 0;

	if (cap == 0)
		return 0;
	for (; *src != '\0'; src++) {
		unsigned char b = (unsigned char)*src;

		if ((b >= 0x20 && b != 0x7f) || b == '\t') {
			if (n + 1 >= cap)
				break;
			dst[n++] = (char)b;
			continue;
		}
		if (n + 4 >= cap)
			break;
		dst[n++] = '\\';
		dst[n++] = 'x';
		dst[n++] = hex[b >> 4];
		dst[n++] = hex[b & 15];
	}
	dst[n] = '\0';
	return n;
}

void ism_log(enum ism_log_level level, const char *fmt, ...)
{
	char line[1024], msg[1024];
	struct timespec ts;
	size_t n;
	va_list ap;

	if (level > log_ctx.level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	n = ism_time_iso((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000, line,
			 sizeof(line));
	n += (size_t)snprintf(line + n, sizeof(line) - n, " %s[%d] %s: ", log_ctx.role,
			      (int)getpid(), level_name(level));
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < sizeof(line))
		n += ism_log_escape(line + n, sizeof(line) - n, msg);
	if (n >= sizeof(line) - 1)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	/* One write per line, so lines of concurrent processes do not interleave. */
	if (write(STDERR_FILENO, line, n) < 0)
		return;
}

void ism_log_lines(enum ism_log_level level, const char *text)
{
	while (*text != '\0') {
		size_t n = strcspn(text, "\n");

		if (n > 0)
			ism_log(level, "%.*s", (int)n, text);
		text += n + (text[n] == '\n');
	}
}

static uint64_t clock_ms(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t ism_now_ms(void)
{
	return clock_ms(CLOCK_MONOTONIC);
}

uint64_t ism_wall_ms(void)
{
	return clock_ms(CLOCK_REALTIME);
}

void ism_bug(const char *file, int line, const char *expr)
{
	ism_log(ISM_LOG_ERR, "BUG at %s:%d: %s", file, line, expr);
	abort();
}

size_t ism_time_iso(uint64_t wall_ms, char *buf, size_t cap)
{
	time_t sec = (time_t)(wall_ms / 1000);
	struct tm tm;
	size_t n;
	int w;

	if (cap == 0)
		return 0;
	gmtime_r(&sec, &tm);
	n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
	w = snprintf(buf + n, cap - n, ".%03uZ", (unsigned)(wall_ms % 1000));
	return n + (w < 0 ? 0 : (size_t)w < cap - n ? (size_t)w : cap - n - 1);
}

/* strftime's conversions a START_TIME format may use (glibc's, without the
 * E and O modifiers); %s, %f and %Nf are ism_time_format's own. */
static const char time_convs[] = "aAbBcCdDeFgGhHIjklmMnprRStTuUVwWxXyYzZ%";

/* The conversion at fmt[i] ('%' there): its length (2, or 3 for %Nf), 0 when
 * it is none. */
static size_t time_conv(const char *fmt, size_t len, size_t i)
{
	if (i + 1 >= len)
		return 0;
	if (fmt[i + 1] >= '1' && fmt[i + 1] <= '9')
		return i + 2 < len && fmt[i + 2] == 'f' ? 3 : 0;
	if (fmt[i + 1] == 'f' || fmt[i + 1] == 's' ||
	    (fmt[i + 1] != '\0' && strchr(time_convs, fmt[i + 1]) != NULL))
		return 2;
	return 0;
}

const char *ism_time_format_check(const char *fmt, size_t len, size_t *at)
{
	if (len == 0 || len > 256) {
		*at = 0;
		return "a START_TIME format is 1 to 256 bytes";
	}
	for (size_t i = 0; i < len; i++) {
		size_t k;

		if (fmt[i] == '\0' || fmt[i] == '\n' || fmt[i] == '\r') {
			*at = i;
			return "a control character in a START_TIME format";
		}
		if (fmt[i] != '%')
			continue;
		if ((k = time_conv(fmt, len, i)) == 0) {
			*at = i;
			return "not a conversion START_TIME knows (strftime's, %s, %f, %1f..%9f)";
		}
		i += k - 1;
	}
	return NULL;
}

size_t ism_time_format(const char *fmt, size_t len, uint64_t wall_ms, char *buf, size_t cap)
{
	time_t sec = (time_t)(wall_ms / 1000);
	size_t n = 0;
	struct tm tm;

	if (cap == 0)
		return 0;
	gmtime_r(&sec, &tm);
	for (size_t i = 0; i < len && n + 1 < cap; i++) {
		size_t k = fmt[i] == '%' ? time_conv(fmt, len, i) : 0;
		char one[4] = {0}, frac[10];
		int digits = 0;

		if (k == 0) {
			buf[n++] = fmt[i];
			continue;
		}
		if (fmt[i + 1] == 's') {
			int w = snprintf(buf + n, cap - n, "%lld", (long long)sec);

			n += w < 0 ? 0 : (size_t)w < cap - n ? (size_t)w : cap - n - 1;
		} else if (fmt[i + k - 1] == 'f') {
			digits = k == 3 ? fmt[i + 1] - '0' : 9;
			snprintf(frac, sizeof(frac), "%03u000000", (unsigned)(wall_ms % 1000));
			for (int d = 0; d < digits && n + 1 < cap; d++)
				buf[n++] = frac[d];
		} else {
			memcpy(one, fmt + i, 2);
			n += strftime(buf + n, cap - n, one, &tm);
		}
		i += k - 1;
	}
	buf[n] = '\0';
	return n;
}

/* n as width decimal digits at p. */
static void put_digits(char *p, unsigned n, int width)
{
	while (width-- > 0) {
		p[width] = (char)('0' + n % 10);
		n /= 10;
	}
}

void ism_time_http(int64_t sec, char *buf)
{
	static const char days[] = "SunMonTueWedThuFriSat";
	static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	time_t t = (time_t)sec;
	struct tm tm;

	gmtime_r(&t, &tm);
	memcpy(buf, "Sun, 00 Jan 0000 00:00:00 GMT", ISM_HTTP_DATE_LEN + 1);
	memcpy(buf, days + 3 * tm.tm_wday, 3);
	put_digits(buf + 5, (unsigned)tm.tm_mday, 2);
	memcpy(buf + 8, months + 3 * tm.tm_mon, 3);
	put_digits(buf + 12, (unsigned)(tm.tm_year + 1900), 4);
	put_digits(buf + 17, (unsigned)tm.tm_hour, 2);
	put_digits(buf + 20, (unsigned)tm.tm_min, 2);
	put_digits(buf + 23, (unsigned)tm.tm_sec, 2);
}
