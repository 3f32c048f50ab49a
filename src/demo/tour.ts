/**
 * `gprxy demo --script`: a short tour through the running demo, each step through a real tunnel → proxy →
 * PostgreSQL path, printing what it ran and what came back, and checking that it came back as it must.
 * A step that behaves otherwise stops the tour with a `demo_step_failed` error naming the step.
 *
 *   1 as alice (pg_writer, tenant-a): psql with the printed command, then write a post
 *   2 as bob (pg_reader, tenant-b): read (tenant-b only), fail to write (42501)
 *   3 as bob: a forged gprxy.context (and a plain SET app.tenant_id) shows nothing of tenant-a
 *   4 as sathwick (pg_admin): see both tenants
 *   5 (not with --per-user) 12 clients of alice and bob at once on demo_tx (transaction pooling, 2 backends per
 *     account): every transaction has its own client's identity, and only 2 backends per account serve them
 *   5 (--per-user only) as alice and bob: the database sees each person as her own role (current_user,
 *     pg_stat_activity), and bob can neither read alice's query text nor cancel her backend
 */
import { execFile } from 'node:child_process';
import type pg from 'pg';
import type { Demo, DemoSession } from './demo.js';
import { DemoError } from './demo-error.js';

export interface TourOptions {
  /** Receives every line of the tour's output. */
  readonly out: (line: string) => void;
  /**
   * Run step 1's query with real psql (the printed command), with this environment (the caller's,
   * without PG* variables that could redirect it). Absent or psql not installed: node-postgres instead.
   */
  readonly psql?: { readonly command?: string; readonly env: Record<string, string | undefined> };
}

export interface TourStep {
  readonly title: string;
  readonly ms: number;
}

type Row = Record<string, unknown>;

function show(value: unknown): string {
  if (value === null || value === undefined) return 'NULL';
  if (Array.isArray(value)) return `{${value.map(show).join(',')}}`;
  if (value instanceof Date) return value.toISOString();
  return String(value);
}

/** Rows as psql prints them (aligned, with a header rule). */
export function formatTable(columns: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const widths = columns.map((c, i) => Math.max(c.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) => ' ' + cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ').trimEnd();
  return [line(columns), widths.map((w) => '-'.repeat(w + 2)).join('+'), ...rows.map(line), `(${rows.length} row${rows.length === 1 ? '' : 's'})`];
}

function psqlLike(result: pg.QueryResult): string[] {
  const columns = result.fields.map((f) => f.name);
  return formatTable(
    columns,
    result.rows.map((r: Row) => columns.map((c) => show(r[c]))),
  );
}

function runPsql(command: string, args: string[], env: Record<string, string | undefined>): Promise<{ ok: true; stdout: string } | { ok: false; missing: boolean; message: string }> {
  return new Promise((resolve) => {
    execFile(command, args, { env, timeout: 20_000 }, (error, stdout, stderr) => {
      if (!error) return resolve({ ok: true, stdout });
      const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
      resolve({ ok: false, missing, message: String(stderr).trim() || error.message });
    });
  });
}

export async function runTour(demo: Demo, options: TourOptions): Promise<TourStep[]> {
  const out = options.out;
  const steps: TourStep[] = [];
  const clients: pg.Client[] = [];
  const extraSessions: DemoSession[] = [];
  const total = demo.perUser || demo.txDatabase ? 5 : 4;
  // Who PostgreSQL sees: the mapped service account, or (identity: per_user) the person's own role.
  const account = (shared: string, email: string) => (demo.perUser ? email : shared);
  let current = '';

  const fail = (message: string): never => {
    throw new DemoError('demo_step_failed', `tour step "${current}" did not behave as expected: ${message}`);
  };
  const check = (condition: boolean, ok: string, otherwise: string) => {
    if (!condition) fail(otherwise);
    out(`  ✓ ${ok}`);
  };
  const connect = async (session: DemoSession): Promise<pg.Client> => {
    const client = session.client('gprxy demo tour');
    client.on('error', () => {});
    clients.push(client);
    try {
      await client.connect();
    } catch (e) {
      fail(`cannot connect through the tunnel on ${session.host}:${session.port} as ${session.user}: ${(e as Error).message}`);
    }
    return client;
  };
  const query = async (client: pg.Client, sql: string, params?: unknown[], shownSql = sql): Promise<pg.QueryResult> => {
    out(`  ${demo.database}=> ${shownSql}`);
    let result: pg.QueryResult;
    try {
      result = await client.query(sql, params);
    } catch (e) {
      const err = e as { code?: string; message: string };
      return fail(`${shownSql} failed: ${err.code ? `ERROR ${err.code}: ` : ''}${err.message}`);
    }
    if (result.fields.length) for (const line of psqlLike(result)) out(`  ${line}`);
    else out(`  ${result.command}${result.rowCount !== null ? ` ${result.rowCount}` : ''}`);
    return result;
  };
  const refused = async (client: pg.Client, sql: string): Promise<{ code?: string; message: string }> => {
    out(`  ${demo.database}=> ${sql}`);
    try {
      await client.query(sql);
    } catch (e) {
      const err = e as { code?: string; message: string };
      out(`  ERROR:  ${err.message}  (SQLSTATE ${err.code ?? '?'})`);
      return err;
    }
    return fail(`${sql} succeeded, but it must be refused`);
  };
  const step = async (title: string, body: () => Promise<void>) => {
    current = title;
    const t0 = Date.now();
    out('');
    out(`[${steps.length + 1}/${total}] ${title}`);
    await body();
    steps.push({ title, ms: Date.now() - t0 });
  };
  const signIn = async (username: string): Promise<DemoSession> => {
    let session: DemoSession;
    try {
      session = await demo.signIn(username);
    } catch (e) {
      return fail(`device-flow login as ${username} failed: ${(e as Error).message}`);
    }
    extraSessions.push(session);
    out(`  ${username} signed in (device flow, approved as ${username}): ${session.user}, roles ${session.identity.roles.join(', ')}, tenant ${session.identity.orgId ?? 'none'}; tunnel on ${session.host}:${session.port}`);
    return session;
  };

  const started = Date.now();
  out('');
  out('The tour: each step goes psql/node-postgres → gprxy connect (tunnel) → gprxy serve (TLS) → PostgreSQL 18 (TLS + SCRAM).');
  try {
    const alice = demo.session;
    await step('as alice (pg_writer, tenant-a): connect with the printed psql command, then write a post', async () => {
      if (alice.identity.email !== 'alice@example.com') fail(`the demo's login is ${alice.user}, but the tour starts as alice (start the demo with autoApproveAs: 'alice')`);
      const sql = 'select current_user, gprxy.user_id(), gprxy.tenant_id()';
      out(`  $ ${alice.psqlCommand} -c "${sql}"`);
      let row: string[] | undefined;
      const psql = options.psql ? await runPsql(options.psql.command ?? 'psql', ['-X', '-A', '-t', '-F', '\t', '-v', 'ON_ERROR_STOP=1', alice.conninfo, '-c', sql], options.psql.env) : undefined;
      if (psql?.ok) {
        row = psql.stdout.trim().split('\t');
      } else {
        if (psql && !psql.missing) fail(`psql failed: ${psql.message}`);
        out(`  (${psql?.missing ? 'psql is not installed' : 'psql not used'}: the same query through node-postgres and the same tunnel)`);
        const r = await (await connect(alice)).query(sql);
        row = [show(r.rows[0]?.current_user), show(r.rows[0]?.user_id), show(r.rows[0]?.tenant_id)];
      }
      for (const line of formatTable(['current_user', 'user_id', 'tenant_id'], [row])) out(`  ${line}`);
      check(
        row[0] === account('app_writer', 'alice@example.com') && row[1] === 'auth0|alice0001' && row[2] === 'tenant-a',
        demo.perUser
          ? 'no password asked: the tunnel sent alice’s access token; the proxy created (or checked) her own role alice@example.com, member of gprxy_writer, and signed her identity'
          : 'no password asked: the tunnel sent alice’s access token, the proxy mapped pg_writer → app_writer and signed her identity',
        `expected ${account('app_writer', 'alice@example.com')} | auth0|alice0001 | tenant-a, got ${row.join(' | ')}`,
      );

      const c = await connect(alice);
      const inserted = await query(c, `insert into posts (title, body) values ('Hello from alice', 'written through gprxy') returning tenant_id, owner_id`);
      const ins = inserted.rows[0] as Row | undefined;
      check(
        ins?.tenant_id === 'tenant-a' && ins?.owner_id === 'auth0|alice0001',
        'the post was written; tenant_id and owner_id came from the signed identity context, not from the client',
        `expected tenant-a / auth0|alice0001, got ${show(ins?.tenant_id)} / ${show(ins?.owner_id)}`,
      );
      const seen = await query(c, 'select tenant_id, title from posts order by title');
      const tenants = new Set(seen.rows.map((r: Row) => r.tenant_id));
      check(
        tenants.size === 1 && tenants.has('tenant-a') && seen.rows.some((r: Row) => r.title === 'Hello from alice'),
        `alice sees her tenant only (${seen.rowCount} posts of tenant-a, hers included)`,
        `expected only tenant-a rows including "Hello from alice", got tenants ${[...tenants].map(show).join(', ')}`,
      );
    });

    let bob!: DemoSession;
    let bobClient!: pg.Client;
    await step('as bob (pg_reader, tenant-b): read, then try to write', async () => {
      bob = await signIn('bob');
      bobClient = await connect(bob);
      const who = await query(bobClient, 'select current_user, gprxy.user_id(), gprxy.tenant_id()');
      check(
        who.rows[0]?.current_user === account('app_reader', 'bob@example.com'),
        demo.perUser ? 'bob is his own role bob@example.com, member of the read-only group gprxy_reader' : 'bob is mapped to the read-only service account app_reader',
        `expected current_user ${account('app_reader', 'bob@example.com')}, got ${show(who.rows[0]?.current_user)}`,
      );
      const seen = await query(bobClient, 'select tenant_id, title from posts order by title');
      const tenants = new Set(seen.rows.map((r: Row) => r.tenant_id));
      check(
        tenants.size === 1 && tenants.has('tenant-b') && seen.rowCount === 2,
        'bob reads tenant-b’s 2 posts; nothing of tenant-a (alice’s new post included)',
        `expected the 2 posts of tenant-b, got ${seen.rowCount} rows of ${[...tenants].map(show).join(', ')}`,
      );
      const err = await refused(bobClient, `insert into posts (title) values ('Hello from bob')`);
      check(err.code === '42501', `refused with 42501 (insufficient privilege): ${demo.perUser ? 'gprxy_reader' : 'app_reader'} has SELECT only`, `expected SQLSTATE 42501, got ${err.code}: ${err.message}`);
    });

    await step('as bob: forge gprxy.context (claim tenant-a and pg_admin) and SET app.tenant_id', async () => {
      const own = String((await bobClient.query(`select current_setting('gprxy.context', true) as v`)).rows[0]?.v ?? '');
      const [body, signature] = own.split('.');
      if (!body || !signature) fail('bob’s session has no signed gprxy.context');
      const payload = JSON.parse(Buffer.from(body!, 'base64url').toString('utf8')) as Record<string, unknown>;
      const forged = `${Buffer.from(JSON.stringify({ ...payload, tenant: 'tenant-a', roles: ['pg_admin'] }), 'utf8').toString('base64url')}.${signature}`;
      out(`  bob's context says tenant ${show(payload.tenant)}, roles ${show(payload.roles)}; he edits it to tenant-a, roles {pg_admin}, keeping the signature`);
      await query(bobClient, `set app.tenant_id = 'tenant-a'`);
      const plain = await query(bobClient, `select count(*) filter (where tenant_id = 'tenant-a')::int as tenant_a_posts from posts`);
      check(plain.rows[0]?.tenant_a_posts === 0, 'a plain SET changes nothing: the policies trust only the signed context', `expected 0 posts of tenant-a, got ${show(plain.rows[0]?.tenant_a_posts)}`);
      await query(bobClient, `select set_config('gprxy.context', $1, false) is not null as set`, [forged], `select set_config('gprxy.context', '<forged>', false) is not null as set`);
      const after = await query(bobClient, 'select gprxy.tenant_id(), gprxy.roles(), (select count(*) from posts)::int as visible_posts');
      const r = after.rows[0] as Row | undefined;
      check(
        r?.tenant_id === null && r?.roles === null && r?.visible_posts === 0,
        'the forged context fails its HMAC check: gprxy.*() return NULL and row-level security shows nothing (fail closed)',
        `expected NULL, NULL, 0, got ${show(r?.tenant_id)}, ${show(r?.roles)}, ${show(r?.visible_posts)}`,
      );
    });

    await step('as sathwick (pg_admin): see both tenants', async () => {
      const sathwick = await signIn('sathwick');
      const c = await connect(sathwick);
      const seen = await query(c, 'select current_user, tenant_id, count(*)::int as posts from posts group by tenant_id order by tenant_id');
      const byTenant = new Map(seen.rows.map((r: Row) => [r.tenant_id, r.posts]));
      check(
        seen.rows[0]?.current_user === account('app_admin', 'sathwick@example.com') && byTenant.get('tenant-a') === 3 && byTenant.get('tenant-b') === 2,
        `sathwick (${account('app_admin', 'sathwick@example.com')}; policies call gprxy.has_role('pg_admin')) sees tenant-a’s 3 posts, alice’s new one included, and tenant-b’s 2`,
        `expected ${account('app_admin', 'sathwick@example.com')} with tenant-a 3 and tenant-b 2, got ${seen.rows.map((r: Row) => `${show(r.current_user)} ${show(r.tenant_id)} ${show(r.posts)}`).join('; ')}`,
      );
    });
    const txDatabase = demo.txDatabase;
    if (txDatabase) {
      await step(`many clients on a small pool: 12 connections of alice and bob to ${txDatabase} (transaction pooling, 2 backends per account)`, async () => {
        // Within limits.max_sessions_per_identity (10): alice keeps step 1's connections open.
        const CLIENTS = 12;
        const ROUNDS = 5;
        const expected = {
          alice: { user: 'auth0|alice0001', tenant: 'tenant-a', posts: 3, account: 'app_writer' },
          bob: { user: 'auth0|bob00002', tenant: 'tenant-b', posts: 2, account: 'app_reader' },
        };
        out(`  ${txDatabase} is the same database with pool: { mode: transaction, size: 2 }: a client holds a backend only while a transaction runs`);
        const conns = await Promise.all(
          Array.from({ length: CLIENTS }, async (_, i) => {
            const who = i % 2 ? ('bob' as const) : ('alice' as const);
            const session = who === 'bob' ? bob : alice;
            if (!session.txClient) return fail(`${session.user}'s tunnel has no listener for ${txDatabase}`);
            const client = session.txClient('gprxy demo tour');
            client.on('error', () => {});
            clients.push(client);
            try {
              await client.connect();
            } catch (e) {
              return fail(`cannot connect to ${txDatabase} through the tunnel as ${session.user}: ${(e as Error).message}`);
            }
            return { who, client };
          }),
        );
        const sql = 'select gprxy.user_id(), gprxy.tenant_id(), (select count(*)::int from posts) as posts, pg_backend_pid() as pid';
        out(`  ${CLIENTS} clients connected at once (${CLIENTS / 2} alice, ${CLIENTS / 2} bob); each runs ${ROUNDS} times: ${sql}`);
        const pids = { alice: new Set<number>(), bob: new Set<number>() };
        const ran = { alice: 0, bob: 0 };
        const seen = { alice: new Set<string>(), bob: new Set<string>() };
        const posts = { alice: new Set<string>(), bob: new Set<string>() };
        const wrong: string[] = [];
        await Promise.all(
          conns.map(async ({ who, client }) => {
            for (let round = 0; round < ROUNDS; round++) {
              let row: Row | undefined;
              try {
                row = (await client.query(sql)).rows[0] as Row | undefined;
              } catch (e) {
                const err = e as { code?: string; message: string };
                return fail(`${sql} failed for ${who}: ${err.code ? `ERROR ${err.code}: ` : ''}${err.message}`);
              }
              const want = expected[who];
              ran[who]++;
              pids[who].add(Number(row?.pid));
              seen[who].add(show(row?.user_id));
              posts[who].add(show(row?.posts));
              if (row?.user_id !== want.user || row?.tenant_id !== want.tenant || row?.posts !== want.posts) wrong.push(`${who} saw ${show(row?.user_id)}, ${show(row?.tenant_id)}, ${show(row?.posts)} posts`);
            }
          }),
        );
        const table = (['alice', 'bob'] as const).map((who) => [who, expected[who].account, String(CLIENTS / 2), String(ran[who]), String(pids[who].size), [...seen[who]].join(','), [...posts[who]].join(',')]);
        for (const line of formatTable(['client', 'account', 'connections', 'transactions', 'backends', 'user_id seen', 'posts seen'], table)) out(`  ${line}`);
        check(
          wrong.length === 0 && ran.alice + ran.bob === CLIENTS * ROUNDS,
          `${CLIENTS * ROUNDS} transactions, each with its own client's identity and row-level security, each backend serving its person's connections in turn`,
          `expected every transaction to see its own identity, got ${wrong.slice(0, 3).join('; ')}${wrong.length > 3 ? ` and ${wrong.length - 3} more` : ''}`,
        );
        check(
          pids.alice.size <= 2 && pids.bob.size <= 2,
          `${CLIENTS} connections served by ${pids.alice.size + pids.bob.size} PostgreSQL backends (at most 2 per account): the proxy attaches a backend per transaction and resets it at the end`,
          `expected at most 2 backends per account, got ${pids.alice.size} for alice and ${pids.bob.size} for bob`,
        );
      });
    }
    if (demo.perUser) {
      await step('as alice and bob (identity: per_user): the database sees the person', async () => {
        const a = await connect(alice);
        await query(a, `select 'alice-private-literal' as note`);
        const alicePid = Number((await a.query('select pg_backend_pid() as pid')).rows[0]?.pid);
        const seen = await query(
          bobClient,
          `select usename, session_user = usename as is_me, query from pg_stat_activity where usename like '%@example.com' and pid in (pg_backend_pid(), $1) order by usename`,
          [alicePid],
          `select usename, session_user = usename as is_me, query from pg_stat_activity where usename like '%@example.com' and pid in (pg_backend_pid(), <alice's pid>) order by usename`,
        );
        const byUser = new Map(seen.rows.map((r: Row) => [r.usename, r]));
        check(
          byUser.get('alice@example.com')?.query === '<insufficient privilege>' && byUser.get('bob@example.com')?.is_me === true,
          'pg_stat_activity names each person (usename), not a shared account; bob sees his own query text and not alice’s',
          `expected alice's row hidden and bob's own, got ${seen.rows.map((r: Row) => `${show(r.usename)}: ${show(r.query)}`).join('; ')}`,
        );
        const err = await refused(bobClient, `select pg_cancel_backend(${alicePid})`);
        check(err.code === '42501', 'bob cannot cancel alice’s backend (42501): PostgreSQL’s own rules between roles, no shared account to abuse', `expected 42501, got ${err.code}: ${err.message}`);
      });
    }
  } finally {
    await Promise.all(clients.map((c) => c.end().catch(() => {})));
    await Promise.all(extraSessions.map((s) => s.close()));
  }
  out('');
  out(`Tour complete: ${steps.length} steps passed in ${((Date.now() - started) / 1000).toFixed(1)} s.`);
  return steps;
}
