/*
 * guest_api.c - every request and mode of the C API against the servers
 * named on the command line, of any transport, all on one handle.
 *
 *   guest_api SERVER...     SERVER: tipc:PORT | tcp:HOST:PORT |
 *                                   udp:HOST:PORT | sctp:HOST:PORT
 *
 * Keys are spread over every server by the library; the key walk is
 * checked on one server and must fail (-2) on several, as documented.
 * Exits 0 when every check passed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nmdb.h>

static int failures;

#define CHECK(expr) \
	do { \
		if (!(expr)) { \
			fprintf(stderr, "guest_api:%d: check failed: %s (%s)\n", \
				__LINE__, #expr, nmdb_last_error()); \
			failures++; \
		} \
	} while (0)

#define K(s) ((const unsigned char *) (s)), strlen(s)

static int add(nmdb_t *db, char *spec)
{
	char *kind = strtok(spec, ":");
	char *a = strtok(NULL, ":");
	char *b = strtok(NULL, ":");

	if (kind == NULL || a == NULL)
		return 0;
	if (strcmp(kind, "tipc") == 0)
		return nmdb_add_tipc_server(db, atoi(a));
	if (b == NULL)
		return 0;
	if (strcmp(kind, "tcp") == 0)
		return nmdb_add_tcp_server(db, a, atoi(b));
	if (strcmp(kind, "udp") == 0)
		return nmdb_add_udp_server(db, a, atoi(b));
	if (strcmp(kind, "sctp") == 0)
		return nmdb_add_sctp_server(db, a, atoi(b));
	return 0;
}

/* Every request and mode on one key; the library picks its server. */
static void exercise(nmdb_t *db, int i)
{
	char key[32], val[32];
	unsigned char buf[128];
	int64_t n = 0;

	sprintf(key, "g-%d", i);
	sprintf(val, "value-%d", i);

	CHECK(nmdb_set(db, K(key), K(val)) == 1);
	CHECK(nmdb_get(db, K(key), buf, sizeof(buf)) == (ssize_t) strlen(val));
	CHECK(memcmp(buf, val, strlen(val)) == 0);
	CHECK(nmdb_del(db, K(key)) == 1);
	CHECK(nmdb_get(db, K(key), buf, sizeof(buf)) == -1);

	CHECK(nmdb_set_sync(db, K(key), K(val)) == 1);
	CHECK(nmdb_cache_del(db, K(key)) == 1);
	CHECK(nmdb_get(db, K(key), buf, sizeof(buf)) == (ssize_t) strlen(val));
	CHECK(nmdb_del_sync(db, K(key)) == 1);
	CHECK(nmdb_del_sync(db, K(key)) == 0);

	CHECK(nmdb_cache_set(db, K(key), K(val)) == 1);
	CHECK(nmdb_cache_get(db, K(key), buf, sizeof(buf)) == (ssize_t) strlen(val));
	CHECK(nmdb_cache_cas(db, K(key), K(val), K("swapped")) == 2);
	CHECK(nmdb_cache_cas(db, K(key), K(val), K("again")) == 1);
	CHECK(nmdb_cache_del(db, K(key)) == 1);
	CHECK(nmdb_cache_del(db, K(key)) == 0);
	CHECK(nmdb_cache_get(db, K(key), buf, sizeof(buf)) == -1);
	CHECK(nmdb_cache_cas(db, K(key), K("a"), K("b")) == 0);

	CHECK(nmdb_cas(db, K(key), K("a"), K("b")) == 0);
	CHECK(nmdb_set_sync(db, K(key), K("a")) == 1);
	CHECK(nmdb_cas(db, K(key), K("a"), K("b")) == 2);
	CHECK(nmdb_cas(db, K(key), K("a"), K("c")) == 1);

	CHECK(nmdb_set_sync(db, K(key), (const unsigned char *) "41", 3) == 1);
	CHECK(nmdb_incr(db, K(key), 1, &n) == 2 && n == 42);
	CHECK(nmdb_cache_incr(db, K(key), 1, &n) == 2 && n == 43);
	CHECK(nmdb_set_sync(db, K(key), K("not a number")) == 1);
	CHECK(nmdb_incr(db, K(key), 1, &n) == 1);
	CHECK(nmdb_del_sync(db, K(key)) == 1);
	CHECK(nmdb_incr(db, K(key), 1, &n) == 0);
}

int main(int argc, char **argv)
{
	nmdb_t *db = nmdb_init();
	unsigned char stats[64 * 23 * 8], buf[256];
	unsigned int nservers = 0, nstats = 0;
	ssize_t r;
	int i;

	if (db == NULL || argc < 2) {
		fprintf(stderr, "usage: guest_api SERVER...\n");
		return 2;
	}
	for (i = 1; i < argc; i++) {
		char copy[256];
		strncpy(copy, argv[i], sizeof(copy) - 1);
		copy[sizeof(copy) - 1] = 0;
		if (add(db, copy) != 1) {
			fprintf(stderr, "guest_api: cannot add %s: %s\n", argv[i], nmdb_last_error());
			return 1;
		}
	}
	CHECK(nmdb_set_timeout(db, 10000) == 1);

	for (i = 0; i < 64; i++)
		exercise(db, i);

	CHECK(nmdb_set_sync(db, K("walk-me"), K("w")) == 1);
	r = nmdb_firstkey(db, buf, sizeof(buf));
	if (argc == 2) {
		int seen = 0, steps = 0;
		while (r >= 0 && steps++ < 100000) {
			unsigned char next[256];
			if (r == 7 && memcmp(buf, "walk-me", 7) == 0)
				seen = 1;
			r = nmdb_nextkey(db, buf, (size_t) r, next, sizeof(next));
			if (r >= 0)
				memcpy(buf, next, (size_t) r);
		}
		CHECK(r == -1);
		CHECK(seen);
	} else {
		CHECK(r == -2);
	}
	CHECK(nmdb_del_sync(db, K("walk-me")) == 1);

	CHECK(nmdb_stats(db, stats, sizeof(stats), &nservers, &nstats) == 1);
	CHECK(nservers == (unsigned int) (argc - 1) && nstats == 23);

	CHECK(nmdb_free(db) == 1);
	if (failures) {
		fprintf(stderr, "guest_api %s...: %d check(s) failed\n", argv[1], failures);
		return 1;
	}
	printf("guest_api:");
	for (i = 1; i < argc; i++)
		printf(" %s", argv[i]);
	printf(": ok\n");
	return 0;
}
