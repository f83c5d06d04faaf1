/*
 * threads.c - one handle shared by several threads (allowed by this
 * libnmdb, unlike the original): each thread writes and reads back its own
 * keys; every answer must be its own.
 *
 *   threads tcp|udp HOST PORT
 */
#define _POSIX_C_SOURCE 200112L
#include <pthread.h>

#include "testutil.h"

#define NTHREADS 4
#define ROUNDS 200

static nmdb_t *db;

static void *worker(void *arg)
{
	int t = *(int *) arg;
	int i, bad = 0;
	char key[32], val[32];
	unsigned char buf[32];

	for (i = 0; i < ROUNDS; i++) {
		sprintf(key, "thr-%d-%d", t, i % 10);
		sprintf(val, "v-%d-%d", t, i);
		if (nmdb_set(db, K(key), (unsigned char *) val, strlen(val)) != 1)
			bad++;
		if (nmdb_get(db, K(key), buf, sizeof(buf)) != (ssize_t) strlen(val)
				|| memcmp(buf, val, strlen(val)) != 0)
			bad++;
	}
	*(int *) arg = bad;
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t th[NTHREADS];
	int arg[NTHREADS];
	int i;

	db = nmdb_init();
	if (db == NULL || add_server_from_args(db, argc, argv) != 1) {
		fprintf(stderr, "cannot add server: %s\n", nmdb_last_error());
		return 1;
	}
	for (i = 0; i < NTHREADS; i++) {
		arg[i] = i;
		CHECK(pthread_create(&th[i], NULL, worker, &arg[i]) == 0);
	}
	for (i = 0; i < NTHREADS; i++) {
		CHECK(pthread_join(th[i], NULL) == 0);
		CHECK(arg[i] == 0);
	}
	CHECK(nmdb_free(db) == 1);
	return finish("threads");
}
