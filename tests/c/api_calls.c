/*
 * api_calls.c - every function of the 0.23 API, and the additions, with the
 * documented return values, against one server.
 *
 *   api_calls tcp|udp HOST PORT
 *
 * It uses keys starting with "api-" and expects no other client to touch
 * them while it runs.
 */
#include "testutil.h"

int main(int argc, char **argv)
{
	nmdb_t *db;
	unsigned char buf[256];
	unsigned char stats[64 * 8];
	unsigned int nservers = 7, nstats = 7;
	int64_t newval;
	ssize_t r;
	int i, seen;

	/* Misuse is an error return, never a crash. */
	CHECK(nmdb_get(NULL, K("k"), buf, sizeof(buf)) == -2);
	CHECK(nmdb_set(NULL, K("k"), K("v")) < 0);
	CHECK(nmdb_free(NULL) == 0);
	CHECK(strlen(nmdb_last_error()) > 0);

	db = nmdb_init();
	CHECK(db != NULL);
	/* No server yet. */
	CHECK(nmdb_get(db, K("k"), buf, sizeof(buf)) == -2);
	CHECK(nmdb_stats(db, stats, sizeof(stats), &nservers, &nstats) == 1);
	CHECK(nservers == 0 && nstats == 0);
	CHECK(nmdb_add_tipc_server(db, -1) == 0);
	CHECK(nmdb_add_sctp_server(db, "127.0.0.1", -1) == 0);

	if (add_server_from_args(db, argc, argv) != 1) {
		fprintf(stderr, "cannot add server: %s\n", nmdb_last_error());
		return 1;
	}
	CHECK(nmdb_set_timeout(db, 5000) == 1);

	/* NULL buffers with a size, and values over the limits. */
	CHECK(nmdb_get(db, NULL, 3, buf, sizeof(buf)) == -2);
	CHECK(nmdb_get(db, K("k"), NULL, 10) == -2);
	CHECK(nmdb_set(db, K("k"), NULL, 70000) < 0);

	/* set / get / del, database mode. */
	CHECK(nmdb_set(db, K("api-a"), K("one")) == 1);
	r = nmdb_get(db, K("api-a"), buf, sizeof(buf));
	CHECK(r == 3 && memcmp(buf, "one", 3) == 0);
	CHECK(nmdb_get(db, K("api-a"), buf, 2) == -2);
	CHECK(nmdb_set_sync(db, K("api-a"), K("two")) == 1);
	CHECK(nmdb_get(db, K("api-a"), buf, sizeof(buf)) == 3);
	CHECK(memcmp(buf, "two", 3) == 0);
	CHECK(nmdb_del(db, K("api-a")) == 1);
	CHECK(nmdb_get(db, K("api-a"), buf, sizeof(buf)) == -1);
	CHECK(nmdb_set_sync(db, K("api-a"), K("three")) == 1);
	CHECK(nmdb_del_sync(db, K("api-a")) == 1);
	CHECK(nmdb_del_sync(db, K("api-a")) == 0);

	/* Cache only. */
	CHECK(nmdb_cache_set(db, K("api-c"), K("cached")) == 1);
	CHECK(nmdb_cache_get(db, K("api-c"), buf, sizeof(buf)) == 6);
	CHECK(nmdb_cache_del(db, K("api-c")) == 1);
	CHECK(nmdb_cache_del(db, K("api-c")) == 0);
	CHECK(nmdb_cache_get(db, K("api-c"), buf, sizeof(buf)) == -1);

	/* Compare and swap. */
	CHECK(nmdb_cas(db, K("api-s"), K("x"), K("y")) == 0);
	CHECK(nmdb_set_sync(db, K("api-s"), K("x")) == 1);
	CHECK(nmdb_cas(db, K("api-s"), K("x"), K("y")) == 2);
	CHECK(nmdb_cas(db, K("api-s"), K("x"), K("z")) == 1);
	CHECK(nmdb_get(db, K("api-s"), buf, sizeof(buf)) == 1 && buf[0] == 'y');
	CHECK(nmdb_cache_set(db, K("api-cs"), K("p")) == 1);
	CHECK(nmdb_cache_cas(db, K("api-cs"), K("p"), K("q")) == 2);
	CHECK(nmdb_cache_cas(db, K("api-cs"), K("p"), K("q")) == 1);
	CHECK(nmdb_cache_del(db, K("api-cs")) == 1);
	CHECK(nmdb_del_sync(db, K("api-s")) == 1);

	/* Increment: the value is a NUL-terminated decimal number. */
	CHECK(nmdb_incr(db, K("api-n"), 1, &newval) == 0);
	CHECK(nmdb_set_sync(db, K("api-n"), (const unsigned char *) "10", 3) == 1);
	newval = 0;
	CHECK(nmdb_incr(db, K("api-n"), 5, &newval) == 2 && newval == 15);
	CHECK(nmdb_incr(db, K("api-n"), -20, NULL) == 2);
	CHECK(nmdb_incr(db, K("api-n"), 0, &newval) == 2 && newval == -5);
	CHECK(nmdb_set_sync(db, K("api-n"), K("no nul")) == 1);
	CHECK(nmdb_incr(db, K("api-n"), 1, &newval) == 1);
	CHECK(nmdb_cache_set(db, K("api-cn"), (const unsigned char *) "7", 2) == 1);
	CHECK(nmdb_cache_incr(db, K("api-cn"), 3, &newval) == 2 && newval == 10);
	CHECK(nmdb_cache_del(db, K("api-cn")) == 1);
	CHECK(nmdb_del_sync(db, K("api-n")) == 1);

	/* Key walk (one server): our key is among the keys. */
	CHECK(nmdb_set_sync(db, K("api-walk"), K("w")) == 1);
	seen = 0;
	r = nmdb_firstkey(db, buf, sizeof(buf));
	for (i = 0; r >= 0 && i < 100000; i++) {
		unsigned char next[256];
		if (r == 8 && memcmp(buf, "api-walk", 8) == 0)
			seen = 1;
		r = nmdb_nextkey(db, buf, (size_t) r, next, sizeof(next));
		if (r >= 0)
			memcpy(buf, next, (size_t) r);
	}
	CHECK(r == -1);
	CHECK(seen);
	CHECK(nmdb_del_sync(db, K("api-walk")) == 1);

	/* Counters of the one server. */
	CHECK(nmdb_stats(db, stats, sizeof(stats), &nservers, &nstats) == 1);
	CHECK(nservers == 1 && nstats == 23);
	CHECK(nmdb_stats(db, stats, 8, &nservers, &nstats) == -3);

	CHECK(nmdb_free(db) == 1);
	return finish("api_calls");
}
