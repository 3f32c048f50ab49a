/** Command-line options of `npm run bench -- [options]`. */
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';

export type Section = 'relay' | 'audit' | 'connect' | 'tunnel' | 'token' | 'memory';
export const SECTIONS: readonly Section[] = ['relay', 'audit', 'connect', 'tunnel', 'token', 'memory'];

export interface BenchOptions {
  readonly quick: boolean;
  /** Seconds per pgbench run. */
  readonly duration: number;
  /** A/B rounds: each target runs this many times per scenario, interleaved; the median is reported. */
  readonly rounds: number;
  readonly clients: readonly number[];
  readonly modes: readonly ('simple' | 'extended')[];
  readonly connectClients: number;
  /** Clients of the statement-audit section (audit.statements none / ddl / all through one proxy). */
  readonly auditClients: number;
  readonly tunnelClients: number;
  /** Pool size of both gprxy and PgBouncer (session mode). */
  readonly pool: number;
  readonly memory: readonly number[];
  /** Also relay through a bare Node.js pipe (the floor of any Node.js relay), as a fourth target. */
  readonly pipe: boolean;
  readonly sections: ReadonlySet<Section>;
  readonly scale: number;
  readonly pgBin: string | undefined;
  /** Write CPU profiles of the proxy child here (node --cpu-prof). */
  readonly profileDir: string | undefined;
  readonly json: string | undefined;
  readonly tokenColdCount: number;
  readonly tokenCachedSeconds: number;
  readonly verbose: boolean;
  /** Wait up to this many minutes for the machine to be quiet (1-minute load average below 1) before starting. */
  readonly waitIdleMinutes: number;
}

export const USAGE = `npm run bench -- [options]

  --quick              short runs (finishes within 3 minutes)
  --duration SECONDS   per pgbench run (default 10; quick 1)
  --rounds N           A/B rounds per scenario, median reported (default 3; quick 2)
  --clients LIST       relay client counts (default 1,10,100)
  --modes LIST         simple,extended (default both)
  --pool N             pool size of gprxy and PgBouncer (default: the largest client count)
  --memory LIST        idle TLS connection counts (default 1000,5000)
  --pipe / --no-pipe   also measure a bare Node.js pipe() relay in the relay rows (default: on, off with --quick)
  --only LIST          sections: ${SECTIONS.join(',')} (default all)
  --scale N            pgbench scale factor (default 1)
  --pg-bin DIR         PostgreSQL binaries (default Debian's 15 if installed, else embedded 18)
  --profile DIR        run the proxy with node --cpu-prof, profiles written to DIR
  --json FILE          also write every sample as JSON
  --verbose            print each pgbench result as it comes
  --wait-idle MINUTES  first wait (at most this long) until the 1-minute load average is below 1
`;

function list(value: string | undefined, fallback: number[]): number[] {
  if (!value) return fallback;
  const out = value.split(',').map((v) => Number(v.trim()));
  if (out.some((n) => !Number.isInteger(n) || n <= 0)) throw new Error(`"${value}" is not a list of positive integers`);
  return out;
}

export function parseOptions(argv: string[]): BenchOptions | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      duration: { type: 'string' },
      rounds: { type: 'string' },
      clients: { type: 'string' },
      modes: { type: 'string' },
      pool: { type: 'string' },
      memory: { type: 'string' },
      pipe: { type: 'boolean' },
      'no-pipe': { type: 'boolean' },
      only: { type: 'string' },
      scale: { type: 'string' },
      'pg-bin': { type: 'string' },
      profile: { type: 'string' },
      json: { type: 'string' },
      verbose: { type: 'boolean', default: false },
      'wait-idle': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) return 'help';
  const quick = values.quick!;
  const clients = list(values.clients, [1, 10, 100]);
  const modes = (values.modes ?? 'simple,extended').split(',').map((m) => m.trim());
  for (const m of modes) if (m !== 'simple' && m !== 'extended') throw new Error(`unknown mode "${m}" (simple, extended)`);
  const sections = new Set((values.only ?? SECTIONS.join(',')).split(',').map((s) => s.trim()) as Section[]);
  for (const s of sections) if (!SECTIONS.includes(s)) throw new Error(`unknown section "${s}" (${SECTIONS.join(', ')})`);
  const debian15 = '/usr/lib/postgresql/15/bin';
  return {
    quick,
    duration: Number(values.duration ?? (quick ? 1 : 10)),
    rounds: Number(values.rounds ?? (quick ? 2 : 3)),
    clients,
    modes: modes as ('simple' | 'extended')[],
    connectClients: 10,
    auditClients: 10,
    tunnelClients: 10,
    pool: Number(values.pool ?? Math.max(...clients, 10)),
    memory: list(values.memory, [1000, 5000]),
    pipe: values['no-pipe'] ? false : (values.pipe ?? !quick),
    sections,
    scale: Number(values.scale ?? 1),
    pgBin: values['pg-bin'] ?? (existsSync(`${debian15}/postgres`) ? debian15 : undefined),
    profileDir: values.profile,
    json: values.json,
    tokenColdCount: quick ? 500 : 2000,
    tokenCachedSeconds: quick ? 1 : 3,
    verbose: values.verbose!,
    waitIdleMinutes: Number(values['wait-idle'] ?? 0),
  };
}
