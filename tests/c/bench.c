/*
 * bench.c - the library's cost per call: the request loop of a blocking
 * client (set, then get, of small values), timed.
 *
 *   bench tcp|udp HOST PORT [ITERATIONS]
 *
 * Prints the mean time per call. Against a server on the same host this is
 * the round trip plus the library's overhead; compare libraries on the same
 * server and host.
 */
#define _POSIX_C_SOURCE 200112L
#include <time.h>

#include "testutil.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	nmdb_t *db;
	long i, n = 10000;
	double t0, t_set, t_get;
	char key[32];
	unsigned char buf[64];

	if (argc >= 5)
		n = atol(argv[4]);
	db = nmdb_init();
	if (db == NULL || add_server_from_args(db, argc, argv) != 1) {
		fprintf(stderr, "cannot add server: %s\n", nmdb_last_error());
		return 1;
	}

	t0 = now();
	for (i = 0; i < n; i++) {
		sprintf(key, "bench-%ld", i % 1000);
		CHECK(nmdb_cache_set(db, K(key), K("0123456789abcdef")) == 1);
	}
	t_set = now() - t0;

	t0 = now();
	for (i = 0; i < n; i++) {
		sprintf(key, "bench-%ld", i % 1000);
		CHECK(nmdb_cache_get(db, K(key), buf, sizeof(buf)) == 16);
	}
	t_get = now() - t0;

	printf("%s %ld calls: cache_set %.2f us/call, cache_get %.2f us/call\n",
		argv[1], n, t_set / n * 1e6, t_get / n * 1e6);
	CHECK(nmdb_free(db) == 1);
	return finish("bench");
}
