/*
 * testutil.h - shared by the C test programs: connecting to the server named
 * on the command line, and checking results. C89, and valid C++.
 *
 * Every program takes the server as:  tcp HOST PORT | udp HOST PORT
 * (or tipc PORT where it says so); PORT -1 means the default.
 */
#ifndef NMDB_TESTUTIL_H
#define NMDB_TESTUTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nmdb.h>

/* Exit status for "cannot run here" (automake's convention). */
#define EXIT_SKIP 77

static int failures = 0;

#define CHECK(expr) \
	do { \
		if (!(expr)) { \
			fprintf(stderr, "%s:%d: check failed: %s (%s)\n", \
				__FILE__, __LINE__, #expr, nmdb_last_error()); \
			failures++; \
		} \
	} while (0)

#define K(s) ((const unsigned char *) (s)), strlen(s)

/* Adds the server named by argv[1..3] to db; 1 on success. */
static int add_server_from_args(nmdb_t *db, int argc, char **argv)
{
	if (argc >= 4 && strcmp(argv[1], "tcp") == 0)
		return nmdb_add_tcp_server(db, argv[2], atoi(argv[3]));
	if (argc >= 4 && strcmp(argv[1], "udp") == 0)
		return nmdb_add_udp_server(db, argv[2], atoi(argv[3]));
	fprintf(stderr, "usage: %s tcp|udp HOST PORT\n", argv[0]);
	exit(2);
	return 0;
}

static int finish(const char *name)
{
	if (failures) {
		fprintf(stderr, "%s: %d check(s) failed\n", name, failures);
		return 1;
	}
	printf("%s: ok\n", name);
	return 0;
}

#endif
