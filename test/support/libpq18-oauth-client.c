/*
 * A tiny libpq 18 client for the tests: connects with the conninfo in argv[1] (no secrets there) and runs
 * the query in argv[2]. When the server asks for SASL OAUTHBEARER, libpq 18 calls our auth-data hook
 * (PQAUTHDATA_OAUTH_BEARER_TOKEN); we answer with the token in the environment variable GPRXY_TEST_TOKEN,
 * the way an application with its own token cache would. libpq's built-in device flow (libpq-oauth) is
 * not used.
 *
 * Output (stdout), one line each:  "hook <openid_configuration> <scope>" per token request,
 * then "ok <first value>" or "error <SQLSTATE> <message>"; exit status 0 / 1.
 *
 * Compiled at test time against the libpq.so.5.18 of the embedded PostgreSQL 18 package. The system
 * headers may be older (Debian's PostgreSQL 15), so the few PostgreSQL 18 declarations used here are
 * written out below from libpq-fe.h of PostgreSQL 18 (PGauthData, PGoauthBearerRequest, PQsetAuthDataHook).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <libpq-fe.h>

#ifndef LIBPQ_HAS_PROMPT_OAUTH_DEVICE
typedef enum
{
	PQAUTHDATA_PROMPT_OAUTH_DEVICE,
	PQAUTHDATA_OAUTH_BEARER_TOKEN
} PGauthData;

typedef struct PGoauthBearerRequest
{
	const char *const openid_configuration;
	const char *const scope;
	PostgresPollingStatusType (*async) (PGconn *conn, struct PGoauthBearerRequest *request, int *altsock);
	void		(*cleanup) (PGconn *conn, struct PGoauthBearerRequest *request);
	char	   *token;
	void	   *user;
} PGoauthBearerRequest;

typedef int (*PQauthDataHook_type) (PGauthData type, PGconn *conn, void *data);
extern void PQsetAuthDataHook(PQauthDataHook_type hook);
extern int	PQdefaultAuthDataHook(PGauthData type, PGconn *conn, void *data);
#endif

static int
token_hook(PGauthData type, PGconn *conn, void *data)
{
	if (type == PQAUTHDATA_OAUTH_BEARER_TOKEN)
	{
		PGoauthBearerRequest *request = data;
		const char *token = getenv("GPRXY_TEST_TOKEN");

		printf("hook %s %s\n", request->openid_configuration ? request->openid_configuration : "(none)",
			   request->scope ? request->scope : "(none)");
		fflush(stdout);
		if (!token || !*token)
			return -1;
		/* libpq copies the token; it stays owned by the environment. */
		request->token = (char *) token;
		return 1;
	}
	return PQdefaultAuthDataHook(type, conn, data);
}

int
main(int argc, char **argv)
{
	const char *keywords[] = {"dbname", NULL};
	const char *values[] = {NULL, NULL};
	PGconn	   *conn;
	PostgresPollingStatusType poll = PGRES_POLLING_WRITING;
	PGresult   *res;

	if (argc != 3)
	{
		fprintf(stderr, "usage: %s CONNINFO QUERY\n", argv[0]);
		return 2;
	}
	PQsetAuthDataHook(token_hook);

	/* Non-blocking connect, so the error verbosity (SQLSTATE in messages) applies to login errors too. */
	values[0] = argv[1];
	conn = PQconnectStartParams(keywords, values, 1);
	if (!conn)
	{
		printf("error 00000 out of memory\n");
		return 1;
	}
	PQsetErrorVerbosity(conn, PQERRORS_VERBOSE);
	while (PQstatus(conn) != CONNECTION_BAD && poll != PGRES_POLLING_OK && poll != PGRES_POLLING_FAILED)
	{
		int			sock = PQsocket(conn);
		fd_set		fds;

		if (sock < 0)
			break;
		FD_ZERO(&fds);
		FD_SET(sock, &fds);
		if (poll == PGRES_POLLING_READING)
			select(sock + 1, &fds, NULL, NULL, NULL);
		else
			select(sock + 1, NULL, &fds, NULL, NULL);
		poll = PQconnectPoll(conn);
	}
	if (PQstatus(conn) != CONNECTION_OK)
	{
		/* Verbose errors read "FATAL:  28000: message"; print the SQLSTATE on its own. */
		const char *msg = PQerrorMessage(conn);
		const char *at = strstr(msg, ":  ");
		char		code[6] = "?????";

		if (at && strlen(at) >= 8 && at[8] == ':')
			memcpy(code, at + 3, 5);
		printf("error %s %s", code, msg);
		PQfinish(conn);
		return 1;
	}
	res = PQexec(conn, argv[2]);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		printf("error %s %s", state ? state : "?????", PQerrorMessage(conn));
		PQclear(res);
		PQfinish(conn);
		return 1;
	}
	printf("ok %s\n", PQgetvalue(res, 0, 0));
	PQclear(res);
	PQfinish(conn);
	return 0;
}
