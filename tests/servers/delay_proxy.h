/* A TCP proxy on 127.0.0.1 that holds every response of an upstream server
 * for a set time: a server whose answers take a known time, for a client
 * library whose server has no sleep of its own (memcached). Shared by
 * tests/test_install_memcached.c and bench/db_memcached.c.
 *
 * Each connection accepted is joined to a new connection to the upstream
 * port. What the client sends goes upstream at once; what upstream answers is
 * held, each piece as it arrives, for the delay from its arrival, then passed
 * on. So a request/response exchange takes the delay (plus loopback time),
 * whatever else goes on, and the proxy counts the exchanges in flight at once.
 *
 * It runs on a thread of its own (plain threads and poll, no coil), not as a
 * tasklet of the scheduler under test: a client that blocked its thread would
 * make every exchange serial and slow, but could not also stall the proxy. */
#ifndef COIL_SERVERS_DELAY_PROXY_H
#define COIL_SERVERS_DELAY_PROXY_H

#include <stdint.h>

struct coil_delay_proxy;

/* What the proxy saw since it started or since coil_delay_proxy_reset. A
 * connection is waiting from the moment request bytes come from its client
 * until all that upstream answered has been passed on (held pieces
 * included): an exchange in flight. */
struct coil_delay_proxy_stats {
    int connections;     /* accepted (and joined upstream) */
    int requests;        /* times a connection began waiting */
    int overlapped;      /* of those, the ones that began while another was waiting */
    int peak;            /* the most connections waiting at one time */
    int waiting;         /* waiting now */
    int upstream_errors; /* upstream connects that failed (the client was closed) */
    int64_t first_ns;    /* when the first request came (CLOCK_MONOTONIC), 0 if none */
    int64_t peak_ns;     /* when the peak was reached */
};

/* Starts a proxy to 127.0.0.1:upstream_port holding responses delay_ns
 * nanoseconds. NULL (errno set, said on stderr) when it could not. */
struct coil_delay_proxy *coil_delay_proxy_start(uint16_t upstream_port, int64_t delay_ns);

/* The port it listens on (127.0.0.1). */
uint16_t coil_delay_proxy_port(const struct coil_delay_proxy *p);

/* Responses that come from now on are held delay_ns. */
void coil_delay_proxy_set_delay(struct coil_delay_proxy *p, int64_t delay_ns);

/* Zeroes the counts (waiting and peak: to the connections waiting now). */
void coil_delay_proxy_reset(struct coil_delay_proxy *p);

void coil_delay_proxy_get_stats(const struct coil_delay_proxy *p,
                                struct coil_delay_proxy_stats *out);

/* Stops the thread and closes every connection. */
void coil_delay_proxy_stop(struct coil_delay_proxy *p);

#endif
