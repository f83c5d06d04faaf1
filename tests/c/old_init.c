/*
 * old_init.c - a program written for the oldest API, where nmdb_init()
 * took the TIPC port. nmdb.h keeps nmdb_init() declared with empty
 * parentheses so this still compiles (as C; C++ and C23 forbid it), and the
 * library ignores the argument.
 *
 *   old_init tcp|udp HOST PORT
 */
#include "testutil.h"

int main(int argc, char **argv)
{
	nmdb_t *db;
	unsigned char buf[16];

	db = nmdb_init(-1);
	CHECK(db != NULL);
	if (db == NULL || add_server_from_args(db, argc, argv) != 1) {
		fprintf(stderr, "cannot add server: %s\n", nmdb_last_error());
		return 1;
	}
	CHECK(nmdb_set(db, K("old-init"), K("works")) == 1);
	CHECK(nmdb_get(db, K("old-init"), buf, sizeof(buf)) == 5);
	CHECK(memcmp(buf, "works", 5) == 0);
	CHECK(nmdb_free(db) == 1);
	return finish("old_init");
}
