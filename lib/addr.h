/* SPDX-License-Identifier: Apache-2.0 */
/* Socket addresses as text. Header-only, pure. */
#ifndef ISM_LIB_ADDR_H
#define ISM_LIB_ADDR_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* The IPv4 or IPv6 address of sa as text into ip, and its port (host order)
 * into *port; false, and neither written, for another family. */
static inline bool ism_addr_text(const struct sockaddr *sa, char ip[INET6_ADDRSTRLEN],
				 uint16_t *port)
{
	const void *a;
	uint16_t p;

	if (sa->sa_family == AF_INET) {
		a = &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
		p = ((const struct sockaddr_in *)(const void *)sa)->sin_port;
	} else if (sa->sa_family == AF_INET6) {
		a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
		p = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_port;
	} else {
		return false;
	}
	if (inet_ntop(sa->sa_family, a, ip, INET6_ADDRSTRLEN) == NULL)
		return false;
	*port = ntohs(p);
	return true;
}

/* Address text ip and port as Envoy writes them, "[ip]:port" for an ip with a
 * ':' (IPv6), "ip:port" for any other (IPv4, a host name), into out (cap
 * bytes, NUL-terminated where cap > 0); snprintf's count. */
static inline int ism_addr_port_text(char *out, size_t cap, const char *ip, uint16_t port)
{
	return snprintf(out, cap, strchr(ip, ':') != NULL ? "[%s]:%u" : "%s:%u", ip, port);
}

/* A dotted quad as inet_ntop writes it (no leading zeros), into out; false
 * for any other text (inet_pton then decides). A few dozen instructions where
 * inet_pton takes some hundred: the worker parses its clients' addresses. */
static inline bool ism_addr_quad(const char *s, uint8_t out[4])
{
	for (int i = 0; i < 4; i++) {
		unsigned v = 0, n = 0;

		while (n < 3 && s[n] >= '0' && s[n] <= '9')
			v = v * 10 + (unsigned)(s[n++] - '0');
		if (n == 0 || v > 255 || (n > 1 && s[0] == '0') || s[n] != (i < 3 ? '.' : '\0'))
			return false;
		out[i] = (uint8_t)v;
		s += n + 1;
	}
	return true;
}

/* IPv4 or IPv6 address text s as a socket address (port 0) in *ss, its
 * length in *len (NULL: not wanted); false when s is neither. */
static inline bool ism_addr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *a4 = (struct sockaddr_in *)(void *)ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)(void *)ss;
	socklen_t l = 0;

	memset(ss, 0, sizeof(*ss));
	if (ism_addr_quad(s, (uint8_t *)&a4->sin_addr) ||
	    inet_pton(AF_INET, s, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		l = sizeof(*a4);
	} else if (inet_pton(AF_INET6, s, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		l = sizeof(*a6);
	}
	if (len != NULL)
		*len = l;
	return l != 0;
}

#endif
