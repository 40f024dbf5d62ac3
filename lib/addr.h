/* SPDX-License-Identifier: Apache-2.0 */
/* Socket addresses as text. Header-only, pure. */
#ifndef ISM_LIB_ADDR_H
#define ISM_LIB_ADDR_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
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

#endif
