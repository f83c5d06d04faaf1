/*
 * factorial.c - the user guide's factorial cache, in C: before computing
 * n!, look for it in nmdb's cache (cache-only mode), and store each result
 * for the next caller. Run twice, the second run is answered from the cache.
 *
 *   factorial tcp|udp HOST PORT
 */
#include "testutil.h"

static nmdb_t *db;
static unsigned long hits, misses;

/* The key for n! is "fact-<n>", the value its decimal text. */
static unsigned long fact(unsigned long n)
{
	char key[32], val[32];
	unsigned char buf[32];
	ssize_t r;
	unsigned long result;

	if (n <= 1)
		return 1;

	sprintf(key, "fact-%lu", n);
	r = nmdb_cache_get(db, K(key), buf, sizeof(buf) - 1);
	if (r > 0) {
		hits++;
		buf[r] = '\0';
		return strtoul((char *) buf, NULL, 10);
	}
	CHECK(r == -1);
	misses++;

	result = n * fact(n - 1);
	sprintf(val, "%lu", result);
	CHECK(nmdb_cache_set(db, K(key), (unsigned char *) val, strlen(val)) == 1);
	return result;
}

int main(int argc, char **argv)
{
	/* 12! is the largest that fits 32 bits. */
	const unsigned long expected = 479001600UL;
	unsigned long n;
	int i;

	db = nmdb_init();
	if (db == NULL || add_server_from_args(db, argc, argv) != 1) {
		fprintf(stderr, "cannot add server: %s\n", nmdb_last_error());
		return 1;
	}

	/* Start from a clean cache for our keys. */
	for (n = 2; n <= 12; n++) {
		char key[32];
		sprintf(key, "fact-%lu", n);
		CHECK(nmdb_cache_del(db, K(key)) >= 0);
	}

	for (i = 0; i < 2; i++) {
		hits = misses = 0;
		CHECK(fact(12) == expected);
		printf("run %d: 12! = %lu, %lu hits, %lu misses\n", i + 1,
			fact(12), hits, misses);
	}
	/* The second run found 12! at once. */
	CHECK(hits == 2 && misses == 0);

	CHECK(nmdb_free(db) == 1);
	return finish("factorial");
}
