/*
 * gprxy_oauth_validator: a PostgreSQL 18 OAuth validator module (oauth_validator_libraries) that asks a
 * local gprxy verification endpoint, over a Unix socket, whether a Bearer token may log in as a role. The
 * token is checked by gprxy's own verifier (issuer, audience, algorithms, signature, expiry, scopes; the
 * role must be one of the token's username_claims), so native PostgreSQL OAuth and `gprxy serve` accept
 * exactly the same tokens: one verification engine.
 *
 * Configuration (postgresql.conf):
 *     oauth_validator_libraries = 'gprxy_oauth_validator'      (or an absolute path without .so)
 *     gprxy.validator_socket = '/run/gprxy/validator.sock'     (gprxy config: validator.socket)
 * pg_hba.conf:
 *     hostssl all +oauth_users 0.0.0.0/0 oauth issuer="https://idp.example/" scope="openid"
 * The endpoint answers with the role as the authenticated identity (authn_id), so no pg_ident map is needed.
 *
 * Wire format to the endpoint (bounded both ways): request "role\0token\0"; answer one status byte
 * ('Y' authorized, 'N' refused, 'E' endpoint error) then a NUL-terminated string (the identity for 'Y',
 * a reason otherwise). The token never reaches PostgreSQL's log.
 *
 * Build (no PostgreSQL server headers needed; the few declarations below follow PostgreSQL 18's public
 * headers fmgr.h and libpq/oauth.h):
 *     gcc -shared -fPIC -O2 -o gprxy_oauth_validator.so gprxy_oauth_validator.c
 * The magic block below is for PostgreSQL 18 built with default FUNC_MAX_ARGS, INDEX_MAX_KEYS and
 * NAMEDATALEN (every packaged build); the server refuses to load it into any other major version.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

/* ---- from PostgreSQL 18 fmgr.h: the module magic block ---------------------------------------------- */
typedef struct
{
	int			version;		/* PG_VERSION_NUM / 100 */
	int			funcmaxargs;	/* FUNC_MAX_ARGS */
	int			indexmaxkeys;	/* INDEX_MAX_KEYS */
	int			namedatalen;	/* NAMEDATALEN */
	int			float8byval;	/* FLOAT8PASSBYVAL */
	char		abi_extra[32];	/* FMGR_ABI_EXTRA */
} Pg_abi_values;

typedef struct
{
	int			len;
	Pg_abi_values abi_fields;
	const char *name;
	const char *version;
} Pg_magic_struct;

const Pg_magic_struct *Pg_magic_func(void);

const Pg_magic_struct *
Pg_magic_func(void)
{
	static const Pg_magic_struct magic = {
		.len = sizeof(Pg_magic_struct),
		.abi_fields = {1800, 100, 32, 64, 1, "PostgreSQL"},
		.name = "gprxy_oauth_validator",
		.version = "1",
	};

	return &magic;
}

/* ---- from PostgreSQL 18 libpq/oauth.h: the validator callbacks -------------------------------------- */
typedef struct ValidatorModuleState
{
	int			sversion;
	void	   *private_data;
} ValidatorModuleState;

typedef struct ValidatorModuleResult
{
	bool		authorized;
	char	   *authn_id;
} ValidatorModuleResult;

typedef void (*ValidatorStartupCB) (ValidatorModuleState *state);
typedef void (*ValidatorShutdownCB) (ValidatorModuleState *state);
typedef bool (*ValidatorValidateCB) (const ValidatorModuleState *state, const char *token, const char *role,
									 ValidatorModuleResult *result);

#define PG_OAUTH_VALIDATOR_MAGIC 0x20250220

typedef struct OAuthValidatorCallbacks
{
	uint32_t	magic;
	ValidatorStartupCB startup_cb;
	ValidatorShutdownCB shutdown_cb;
	ValidatorValidateCB validate_cb;
} OAuthValidatorCallbacks;

/* Server functions (exported by the postgres binary). */
extern char *pstrdup(const char *in);
extern const char *GetConfigOption(const char *name, bool missing_ok, bool restrict_privileged);

const OAuthValidatorCallbacks *_PG_oauth_validator_module_init(void);

/* ---- the module ------------------------------------------------------------------------------------ */

#define SOCKET_SETTING "gprxy.validator_socket"
#define DEFAULT_SOCKET "/run/gprxy/validator.sock"
#define MAX_ANSWER 1024
#define TIMEOUT_SECONDS 10

static bool
write_all(int fd, const char *buf, size_t len)
{
	while (len > 0)
	{
		ssize_t		n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		buf += n;
		len -= (size_t) n;
	}
	return true;
}

/*
 * Asks the endpoint. Returns the status byte ('Y', 'N', 'E') and the string after it in `text`, or 0 when
 * the endpoint cannot be reached or answers out of format.
 */
static char
ask_endpoint(const char *path, const char *role, const char *token, char *text, size_t textlen)
{
	struct sockaddr_un addr;
	struct timeval tv = {TIMEOUT_SECONDS, 0};
	char		answer[MAX_ANSWER];
	size_t		got = 0;
	int			fd;
	char		status = 0;

	if (strlen(path) >= sizeof(addr.sun_path))
		return 0;
	memset(&addr, 0, sizeof(addr));
	addr.sun_family = AF_UNIX;
	strcpy(addr.sun_path, path);

	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0)
		return 0;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *) &addr, sizeof(addr)) != 0 ||
		!write_all(fd, role, strlen(role) + 1) ||
		!write_all(fd, token, strlen(token) + 1))
	{
		close(fd);
		return 0;
	}
	while (got < sizeof(answer))
	{
		ssize_t		n = read(fd, answer + got, sizeof(answer) - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t) n;
		if (memchr(answer + 1, '\0', got - 1))
			break;
	}
	close(fd);
	if (got >= 2 && (answer[0] == 'Y' || answer[0] == 'N' || answer[0] == 'E') && memchr(answer + 1, '\0', got - 1))
	{
		status = answer[0];
		strncpy(text, answer + 1, textlen - 1);
		text[textlen - 1] = '\0';
	}
	return status;
}

static bool
validate_token(const ValidatorModuleState *state, const char *token, const char *role, ValidatorModuleResult *result)
{
	char		text[MAX_ANSWER];
	char		status = ask_endpoint((const char *) state->private_data, role, token, text, sizeof(text));

	result->authorized = false;
	result->authn_id = NULL;
	switch (status)
	{
		case 'Y':
			result->authorized = true;
			result->authn_id = pstrdup(text);
			return true;
		case 'N':
			/* A refused token: PostgreSQL answers the client with its OAuth error and 28000. */
			return true;
		default:
			/* Endpoint unreachable or broken: PostgreSQL logs "internal error in OAuth validator module". */
			return false;
	}
}

/* Reads the endpoint's socket path once per backend (the server calls this when it loads the module). */
static void
validator_startup(ValidatorModuleState *state)
{
	const char *path = GetConfigOption(SOCKET_SETTING, true, false);

	state->private_data = pstrdup(path && *path ? path : DEFAULT_SOCKET);
}

/* The path lives in the server's memory context, released with it: nothing else to do. */
static void
validator_shutdown(ValidatorModuleState *state)
{
	state->private_data = NULL;
}

static const OAuthValidatorCallbacks callbacks = {
	.magic = PG_OAUTH_VALIDATOR_MAGIC,
	.startup_cb = validator_startup,
	.shutdown_cb = validator_shutdown,
	.validate_cb = validate_token,
};

const OAuthValidatorCallbacks *
_PG_oauth_validator_module_init(void)
{
	return &callbacks;
}
