/*
 * guide_example.c - the C example of the nmdb user guide, with its older
 * names (nmdb_connect, nmdb_add_server, nmdb_sync_set, nmdb_sync_del).
 *
 *   guide_example tipc PORT [PORT...]   as in the guide (TIPC servers)
 *   guide_example tcp|udp HOST PORT     the same operations over TCP/UDP
 *
 * Exits 0 on success, 1 on a failed check, 77 if TIPC is not available.
 */
#include "testutil.h"

int main(int argc, char **argv)
{
	unsigned char *key, *val;
	size_t ksize, vsize;
	nmdb_t *db;
	int i;
	ssize_t r;
	unsigned char buf[64];

	if (argc >= 3 && strcmp(argv[1], "tipc") == 0) {
		/* As the guide shows: connect to the first server, add the
		 * others. */
		db = nmdb_connect(atoi(argv[2]));
		if (db == NULL) {
			printf("guide_example: skipped: %s\n", nmdb_last_error());
			return EXIT_SKIP;
		}
		for (i = 3; i < argc; i++)
			CHECK(nmdb_add_server(db, atoi(argv[i])) == 1);
	} else {
		db = nmdb_init();
		CHECK(db != NULL);
		if (db == NULL || add_server_from_args(db, argc, argv) != 1) {
			fprintf(stderr, "cannot add server: %s\n", nmdb_last_error());
			return 1;
		}
	}

	key = (unsigned char *) malloc(16);
	val = (unsigned char *) malloc(16);
	memcpy(key, "guide-key", 9);
	ksize = 9;
	memcpy(val, "guide-value", 11);
	vsize = 11;

	CHECK(nmdb_set(db, key, ksize, val, vsize) == 1);
	r = nmdb_get(db, key, ksize, buf, sizeof(buf));
	CHECK(r == (ssize_t) vsize && memcmp(buf, val, vsize) == 0);
	CHECK(nmdb_del(db, key, ksize) == 1);
	CHECK(nmdb_get(db, key, ksize, buf, sizeof(buf)) == -1);

	/* The synchronous variants, older spelling. */
	CHECK(nmdb_sync_set(db, key, ksize, val, vsize) == 1);
	CHECK(nmdb_get(db, key, ksize, buf, sizeof(buf)) == (ssize_t) vsize);
	CHECK(nmdb_sync_del(db, key, ksize) == 1);
	CHECK(nmdb_sync_del(db, key, ksize) == 0);

	/* The cache-only variants. */
	CHECK(nmdb_cache_set(db, key, ksize, val, vsize) == 1);
	CHECK(nmdb_cache_get(db, key, ksize, buf, sizeof(buf)) == (ssize_t) vsize);
	CHECK(nmdb_cache_del(db, key, ksize) == 1);
	CHECK(nmdb_cache_get(db, key, ksize, buf, sizeof(buf)) == -1);

	free(key);
	free(val);
	CHECK(nmdb_free(db) == 1);
	return finish("guide_example");
}
