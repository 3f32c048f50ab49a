/**
 * Every role claim mapped to the one service account app_writer: alice, bob and sathwick are peers on one
 * account (and so one pool), the setting of the shared-account and transaction-pooling suites.
 */
export const ALL_ON_WRITER = {
  role_mapping: [
    { role: 'pg_writer', account: 'app_writer' },
    { role: 'pg_reader', account: 'app_writer' },
    { role: 'pg_admin', account: 'app_writer' },
  ],
};

/** The transaction-pooling suites' limits: room to wait for a busy backend, no per-identity limit. */
export const TX_LIMITS = { login_timeout: '5s', pool_wait_timeout: '10s', max_sessions_per_identity: 0 };

/** ALL_ON_WRITER with TX_LIMITS. */
export const TX_ON_WRITER = { ...ALL_ON_WRITER, limits: TX_LIMITS };
