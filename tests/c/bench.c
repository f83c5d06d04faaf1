/*
 * bench.c - the library's cost per call: the request loop of a blocking
 * client, timed.
 *
 *   bench tcp|udp HOST PORT [ITERATIONS [LOOP]]
 *
 * LOOP is what each iteration does:
 *   cache    (default) cache_set of small values, then as many cache_get
 *   set      nmdb_set (asynchronous database write)
 *   set-sync nmdb_set_sync
 *   set-get  nmdb_set of one key, then nmdb_get of a key never written
 *            (a database read; keys cycle over more than the default cache)
 *
 * Prints the mean time per call. Against a server on the same host this is
 * the round trip plus the library's overhead; compare libraries, or server
 * builds, on the same host (BENCHMARKS.md pins both to one CPU and reads
 * the server's CPU time with perf stat).
 */
#define _POSIX_C_SOURCE 200112L
#include <time.h>

#include "testutil.h"

static nmdb_t *db_handle;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One iteration of LOOP for iteration i; false if a call failed. */
static int one(const char *loop, long i)
{
	char key[32], other[32];
	unsigned char buf[64];

	if (strcmp(loop, "set-get") == 0) {
		sprintf(key, "bench-%ld", i % 400000);
		sprintf(other, "absent-%ld", (i * 7919) % 400000);
		return nmdb_set(db_handle, K(key), K("0123456789abcdef")) == 1 &&
			nmdb_get(db_handle, K(other), buf, sizeof(buf)) == -1;
	}
	sprintf(key, "bench-%ld", i % 1000);
	if (strcmp(loop, "set") == 0)
		return nmdb_set(db_handle, K(key), K("0123456789abcdef")) == 1;
	return nmdb_set_sync(db_handle, K(key), K("0123456789abcdef")) == 1;
}

int main(int argc, char **argv)
{
	long i, n = 10000;
	double t0, t_set, t_get;
	char key[32];
	unsigned char buf[64];
	const char *loop = argc >= 6 ? argv[5] : "cache";

	if (argc >= 5)
		n = atol(argv[4]);
	if (strcmp(loop, "cache") != 0 && strcmp(loop, "set") != 0 &&
	    strcmp(loop, "set-sync") != 0 && strcmp(loop, "set-get") != 0) {
		fprintf(stderr, "unknown loop %s (cache, set, set-sync, set-get)\n", loop);
		return 2;
	}
	db_handle = nmdb_init();
	if (db_handle == NULL || add_server_from_args(db_handle, argc, argv) != 1) {
		fprintf(stderr, "cannot add server: %s\n", nmdb_last_error());
		return 1;
	}

	if (strcmp(loop, "cache") != 0) {
		t0 = now();
		for (i = 0; i < n; i++)
			CHECK(one(loop, i));
		printf("%s %ld calls: %s %.2f us/iteration\n", argv[1], n, loop,
			(now() - t0) / n * 1e6);
		CHECK(nmdb_free(db_handle) == 1);
		return finish("bench");
	}

	t0 = now();
	for (i = 0; i < n; i++) {
		sprintf(key, "bench-%ld", i % 1000);
		CHECK(nmdb_cache_set(db_handle, K(key), K("0123456789abcdef")) == 1);
	}
	t_set = now() - t0;

	t0 = now();
	for (i = 0; i < n; i++) {
		sprintf(key, "bench-%ld", i % 1000);
		CHECK(nmdb_cache_get(db_handle, K(key), buf, sizeof(buf)) == 16);
	}
	t_get = now() - t0;

	printf("%s %ld calls: cache_set %.2f us/call, cache_get %.2f us/call\n",
		argv[1], n, t_set / n * 1e6, t_get / n * 1e6);
	CHECK(nmdb_free(db_handle) == 1);
	return finish("bench");
}
