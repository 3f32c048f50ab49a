/**
 * Reads, from the source text of src/, every log event the code can write and the fields it puts on the line,
 * for the doc tests that hold docs/LOG-EVENTS.md and the README's per-user table to the code.
 *
 * A log line is an object literal with an `event` key given to a pino call (`log.info({ event: '…', … })`,
 * `log[level]({ … })`, `logger.child({ event: '…', … })`) or bound to a `const` that is then logged. Its fields
 * are the literal's top-level keys. What a plain reading cannot see is read by a named resolver below
 * (a spread of another object, an event name held in a variable, the object a child logger writes), and
 * anything neither reads fails loudly (`LogEventsParseError`) instead of being skipped: a new log line
 * that hides its fields behind a spread needs a resolver here, and then a row in the doc.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';

export const ROOT = join(import.meta.dirname, '..', '..');
const SRC = join(ROOT, 'src');

export class LogEventsParseError extends Error {
  readonly code = 'log_events_unreadable';
}

export interface LoggedEvent {
  /** Field names as written on the line (top-level keys), all lines of the event merged. */
  readonly fields: Set<string>;
  /** `src/…/file.ts:line` of each line that writes it. */
  readonly sites: string[];
  /** The pino levels it is written at. */
  readonly levels: Set<string>;
}

interface Source {
  readonly file: string; // relative to the repository, e.g. src/proxy/pool.ts
  readonly text: string;
}

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    const path = join(dir, d.name);
    if (d.isDirectory()) return tsFiles(path);
    return d.name.endsWith('.ts') && !d.name.endsWith('.d.ts') ? [path] : [];
  });
}

function sources(): Source[] {
  return tsFiles(SRC).map((path) => ({ file: relative(ROOT, path), text: readFileSync(path, 'utf8') }));
}

const lineOf = (text: string, at: number) => text.slice(0, at).split('\n').length;

/** Index just past the quoted string / template literal that starts at `at`. */
function skipString(text: string, at: number): number {
  const quote = text[at]!;
  let i = at + 1;
  while (i < text.length) {
    const c = text[i]!;
    if (c === '\\') i += 2;
    else if (c === quote) return i + 1;
    else if (quote === '`' && c === '$' && text[i + 1] === '{') i = closing(text, i + 1) + 1;
    else i++;
  }
  throw new LogEventsParseError(`unterminated string at offset ${at}`);
}

/** Index of the bracket that closes the one at `open` ({, ( or [), strings and templates skipped. */
function closing(text: string, open: number): number {
  const pairs: Record<string, string> = { '{': '}', '(': ')', '[': ']' };
  const stack: string[] = [];
  let i = open;
  while (i < text.length) {
    const c = text[i]!;
    if (c === "'" || c === '"' || c === '`') {
      i = skipString(text, i);
      continue;
    }
    if (pairs[c]) stack.push(pairs[c]);
    else if (c === '}' || c === ')' || c === ']') {
      if (stack.pop() !== c) throw new LogEventsParseError(`unbalanced ${c} at offset ${i}`);
      if (stack.length === 0) return i;
    }
    i++;
  }
  throw new LogEventsParseError(`unclosed bracket at offset ${open}`);
}

/**
 * The bracket around `at` (a backward scan: the literal's earlier keys are balanced): the `{` of an object
 * literal, or -1 when it is a `(` or `[` (a parameter list: `event` is not a key there).
 */
function enclosingBrace(text: string, at: number): number {
  let depth = 0;
  for (let i = at; i >= 0; i--) {
    const c = text[i]!;
    if ('})]'.includes(c)) depth++;
    else if ('{(['.includes(c)) {
      if (depth === 0) return c === '{' ? i : -1;
      depth--;
    }
  }
  throw new LogEventsParseError(`no object literal around offset ${at}`);
}

/** The top-level comma-separated parts of a literal's body (between its braces or a call's parentheses). */
function topLevelParts(body: string): string[] {
  const parts: string[] = [];
  let start = 0;
  let i = 0;
  while (i < body.length) {
    const c = body[i]!;
    if (c === "'" || c === '"' || c === '`') i = skipString(body, i);
    else if (c === '{' || c === '(' || c === '[') i = closing(body, i) + 1;
    else {
      if (c === ',') {
        parts.push(body.slice(start, i));
        start = i + 1;
      }
      i++;
    }
  }
  parts.push(body.slice(start));
  return parts.map((p) => p.trim()).filter((p) => p !== '');
}

/** Resolves `...expr` of a literal in `file` to the field names it adds; undefined: not readable. */
type SpreadResolver = (expr: string, at: { source: Source; event?: string }) => string[] | undefined;

/** Top-level keys of the object literal whose `{` is at `open` in `text`; spreads through `spread`. */
function literalKeys(text: string, open: number, spread: SpreadResolver, at: { source: Source; event?: string }): string[] {
  const keys: string[] = [];
  for (const part of topLevelParts(text.slice(open + 1, closing(text, open)))) {
    if (part.startsWith('...')) {
      const expr = part.slice(3).trim();
      // `...(cond ? { a: x } : {})`: the keys of the literals the condition chooses between.
      if (expr.startsWith('(') && expr.includes('?') && expr.includes('{')) {
        for (let i = expr.indexOf('{'); i >= 0; i = expr.indexOf('{', closing(expr, i) + 1)) keys.push(...literalKeys(expr, i, spread, at));
        continue;
      }
      const resolved = spread(expr, at);
      if (!resolved) throw new LogEventsParseError(`${at.source.file}: cannot read the fields of \`...${expr}\`${at.event ? ` (event ${at.event})` : ''}; add a resolver to test/support/log-events.ts`);
      keys.push(...resolved);
      continue;
    }
    const key = /^(?:(\w+)|'(\w+)'|"(\w+)")\s*(?::|$)/.exec(part);
    if (!key) throw new LogEventsParseError(`${at.source.file}: cannot read the key of \`${part.slice(0, 60)}\``);
    keys.push(key[1] ?? key[2] ?? key[3]!);
  }
  return keys;
}

/** Keys of the nearest `const name = { … }` before `before` in the source. */
function constLiteralKeys(source: Source, name: string, before: number, spread: SpreadResolver): string[] {
  const re = new RegExp(`const ${name}(?:\\s*:[^=]+)?\\s*=\\s*\\{`, 'g');
  let open = -1;
  for (const m of source.text.matchAll(re)) if (m.index < before) open = m.index + m[0].length - 1;
  if (open < 0) throw new LogEventsParseError(`${source.file}: no \`const ${name} = { … }\` before offset ${before}`);
  return literalKeys(source.text, open, spread, { source });
}

// ---- Resolvers: the spreads and indirect names the code uses today, each read from the code it names. ----

/**
 * `...end.fields` of disconnect(): the `fields` every caller passes, split by the phase of the End it builds
 * (the nearest `phase: 'login' | 'session'` before the `fields`): login-phase fields land on
 * connection_refused / auth_failure, session-phase fields on session_end.
 */
function disconnectFields(all: Source[], phase: 'login' | 'session'): string[] {
  const keys: string[] = [];
  for (const source of all) {
    if (source.file.endsWith('disconnect.ts') || !source.text.includes('disconnect(')) continue;
    const phases = [...source.text.matchAll(/phase: '(login|session)'/g)].map((m) => ({ at: m.index, phase: m[1] }));
    // `fields: { … }`, or the shorthand `{ …, fields }` (a key: after `{` or `,`, not a spread or an argument).
    for (const m of source.text.matchAll(/\bfields\s*:\s*\{|(?<=[{,]\s*)fields(?=\s*[,}])/g)) {
      const p = phases.filter((x) => x.at < m.index).at(-1);
      if (!p) throw new LogEventsParseError(`${source.file}:${lineOf(source.text, m.index)}: disconnect fields without a phase before them`);
      if (p.phase !== phase) continue;
      const ownSpread: SpreadResolver = (expr) => (expr === 'fields' ? constLiteralKeys(source, 'fields', m.index, ownSpread) : undefined);
      if (m[0].includes('{')) keys.push(...literalKeys(source.text, m.index + m[0].length - 1, ownSpread, { source }));
      else keys.push(...constLiteralKeys(source, 'fields', m.index, ownSpread));
    }
  }
  return keys;
}

/** Members of `interface Name { readonly a: …; … }` in the source. */
function interfaceMembers(source: Source, name: string): string[] | undefined {
  const m = new RegExp(`interface ${name} \\{`).exec(source.text);
  if (!m) return undefined;
  const open = m.index + m[0].length - 1;
  return [...source.text.slice(open + 1, closing(source.text, open)).matchAll(/^\s*(?:readonly\s+)?(\w+)\??:/gm)].map((k) => k[1]!);
}

function spreadResolver(all: Source[]): SpreadResolver {
  return (expr, { source, event }) => {
    // disconnect(): the caller's fields (see disconnectFields).
    if (source.file === 'src/proxy/disconnect.ts' && expr === 'end.fields') return disconnectFields(all, event === 'session_end' ? 'session' : 'login');
    // config_reloaded: `...changes`, a ReloadChanges (the interface's members, as the code names them).
    if (expr === 'changes') {
      const type = /(?:let|const) changes: (\w+)/.exec(source.text)?.[1];
      return type ? interfaceMembers(source, type) : undefined;
    }
    // metrics_listening: `...this.metricsAddress`, declared as an inline object type.
    if (expr === 'this.metricsAddress') {
      const m = /metricsAddress: \{([^}]*)\}/.exec(source.text);
      return m ? [...m[1]!.matchAll(/(\w+)\??:/g)].map((k) => k[1]!) : undefined;
    }
    // admin_action of the console: `...fields`, the third argument of every `this.audit(command, outcome, { … })`,
    // whose `...result.audit` is an `audit: { … }` of a command's result (src/proxy/admin/commands.ts).
    if (source.file === 'src/proxy/admin/console.ts' && expr === 'fields') {
      const commands = all.find((s) => s.file === 'src/proxy/admin/commands.ts');
      const auditKeys = (e: string): string[] | undefined => {
        if (e !== 'result.audit' || !commands) return undefined;
        return [...commands.text.matchAll(/audit: \{/g)].flatMap((a) => literalKeys(commands.text, a.index + a[0].length - 1, () => undefined, { source: commands }));
      };
      return [...source.text.matchAll(/this\.audit\(/g)].flatMap((call) => {
        const open = call.index + call[0].length - 1;
        const third = topLevelParts(source.text.slice(open + 1, closing(source.text, open)))[2];
        if (!third?.startsWith('{')) throw new LogEventsParseError(`${source.file}:${lineOf(source.text, call.index)}: audit() fields are not a literal`);
        return literalKeys(third, 0, auditKeys, { source, event });
      });
    }
    return undefined;
  };
}

/** The event name(s) of `event: <value>` (or the `event` shorthand) at `at`. */
function eventNames(source: Source, value: string | undefined, at: number): string[] {
  if (value === undefined) {
    // `{ event, … }`: the `const event = …` before it (its string literals: a condition choosing between names).
    const decl = [...source.text.matchAll(/const event = ([^;\n]+)/g)].filter((m) => m.index < at).at(-1);
    if (decl) return [...decl[1]!.matchAll(/'(\w+)'/g)].map((m) => m[1]!);
  } else if (/^'\w+'$/.test(value)) return [value.slice(1, -1)];
  else if (/^\w+\.event$/.test(value)) {
    // `event: rule.event`: the union of the `readonly event: 'a' | 'b'` the file declares.
    const decl = /readonly event: ((?:'\w+'(?:\s*\|\s*)?)+);/.exec(source.text);
    if (decl) return [...decl[1]!.matchAll(/'(\w+)'/g)].map((m) => m[1]!);
  }
  throw new LogEventsParseError(`${source.file}:${lineOf(source.text, at)}: cannot read the event name \`${value ?? 'event'}\``);
}

const LOG_CALL = /(?:\.(?:trace|debug|info|warn|error|fatal|child)|\])\(\s*$/;

/**
 * An object literal with an `event` key that is not given to a logger (a metric's label, a rule table):
 * the doc test asserts the list is exactly the one it expects, so a log line the scan does not recognise
 * as one fails there instead of going missing.
 */
export interface NotLogged {
  readonly site: string;
  readonly text: string;
}

export function scanLogEvents(): { events: Map<string, LoggedEvent>; notLogged: NotLogged[] } {
  const all = sources();
  const spread = spreadResolver(all);
  const events = new Map<string, LoggedEvent>();
  const notLogged: NotLogged[] = [];
  const add = (name: string, fields: string[], site: string, levels: string[]) => {
    const e = events.get(name) ?? { fields: new Set<string>(), sites: [], levels: new Set<string>() };
    for (const f of fields) if (f !== 'event') e.fields.add(f);
    for (const l of levels) e.levels.add(l);
    e.sites.push(site);
    events.set(name, e);
  };
  for (const source of all) {
    try {
      scanFile(source);
    } catch (e) {
      if (e instanceof LogEventsParseError && !e.message.startsWith('src/')) throw new LogEventsParseError(`${source.file}: ${e.message}`);
      throw e;
    }
  }
  return { events, notLogged };

  function scanFile(source: Source): void {
    const { text } = source;
    for (const m of text.matchAll(/([{,]\s*)event\b\s*(?::\s*([^,}\n]+?))?\s*(?=[,}\n])/g)) {
      const at = m.index + m[1]!.length;
      const open = enclosingBrace(text, at);
      // Not a key: a parameter list, or `${event}` inside a template string.
      if (open < 0 || text[open - 1] === '$') continue;
      const before = text.slice(Math.max(0, open - 200), open);
      const site = `${source.file}:${lineOf(text, at)}`;
      const constName = /const (\w+) = $/.exec(before)?.[1];
      const logged = LOG_CALL.test(before) || (constName !== undefined && new RegExp(`\\.(?:trace|debug|info|warn|error|fatal)\\(${constName}\\b`).test(text));
      if (!logged) {
        notLogged.push({ site, text: text.slice(open, closing(text, open) + 1).replace(/\s+/g, ' ') });
        continue;
      }
      for (const name of eventNames(source, m[2]?.trim(), at)) {
        const fields = literalKeys(text, open, spread, { source, event: name });
        if (/\.child\(\s*$/.test(before)) fields.push(...childLines(source, at));
        add(name, fields, site, levelsOf(all, source, before, constName, at));
      }
    }
  }
}

const LEVELS = 'trace|debug|info|warn|error|fatal';

/**
 * The levels a log literal is written at: the pino method it is given to (`log.warn({ … })`), the levels a
 * `log[expr]({ … })` can choose (its string literals; disconnect()'s `end.level` adds the `level: '…'` its
 * callers pass), the calls that log a `const` literal, or those of a child logger's lines.
 */
function levelsOf(all: Source[], source: Source, before: string, constName: string | undefined, at: number): string[] {
  const direct = new RegExp(`\\.(${LEVELS})\\(\\s*$`).exec(before);
  if (direct) return [direct[1]!];
  const chosen = /\[([^\]]*)\]\(\s*$/.exec(before);
  if (chosen) {
    // The branches of `cond ? 'info' : 'warn'` or `x ?? 'info'`, not the strings the condition compares.
    const levels = [...chosen[1]!.matchAll(/[?:]\s*'(\w+)'/g)].map((m) => m[1]!);
    if (chosen[1]!.includes('end.level')) {
      for (const caller of all.filter((c) => c.text.includes('disconnect(') && !c.file.endsWith('disconnect.ts'))) levels.push(...[...caller.text.matchAll(/\blevel: '(\w+)'/g)].map((m) => m[1]!));
    }
    return levels;
  }
  const call = constName ? `\\.(${LEVELS})\\(${constName}\\b` : /\.child\(\s*$/.test(before) ? `this\\.log\\.(${LEVELS})\\(\\w+\\)` : undefined;
  const calls = call ? [...source.text.matchAll(new RegExp(call, 'g'))].map((m) => m[1]!) : [];
  if (calls.length === 0) throw new LogEventsParseError(`${source.file}:${lineOf(source.text, at)}: cannot tell the level of this log line`);
  return calls;
}

/**
 * A child logger bound with `{ event: '…', … }` (statement audit): its lines are the objects the file logs
 * through `this.log.<level>(name)`: the keys of `const name = { … }` and of every `name.key = …` assignment.
 */
function childLines(source: Source, at: number): string[] {
  const calls = [...source.text.matchAll(/this\.log\.(?:trace|debug|info|warn|error|fatal)\((\w+)\)/g)];
  if (calls.length === 0) throw new LogEventsParseError(`${source.file}:${lineOf(source.text, at)}: a child logger with an event, but no \`this.log.info(name)\` to read`);
  return calls.flatMap((c) => {
    const name = c[1]!;
    return [...constLiteralKeys(source, name, c.index, () => undefined), ...[...source.text.matchAll(new RegExp(`\\b${name}\\.(\\w+) = `, 'g'))].map((k) => k[1]!)];
  });
}

/** The rows of every Markdown table whose header starts with `| event |`, as header name → cell. */
export function eventRows(markdown: string): Map<string, string>[] {
  const rows: Map<string, string>[] = [];
  let header: string[] | undefined;
  for (const line of markdown.split('\n')) {
    const cells = line.split('|').slice(1, -1).map((c) => c.trim());
    if (!line.startsWith('|')) header = undefined;
    else if (/^\| event \|/.test(line)) header = cells;
    else if (header && !/^\|[-| ]+\|$/.test(line)) rows.push(new Map(header.map((h, i) => [h, cells[i] ?? ''])));
  }
  return rows;
}

/** Event → fields as a Markdown doc's event tables have them (the backticked names of the `fields` column). */
export function documentedEvents(markdown: string): Map<string, Set<string>> {
  const events = new Map<string, Set<string>>();
  for (const row of eventRows(markdown)) {
    const name = row.get('event')!.replaceAll('`', '');
    if (events.has(name)) throw new LogEventsParseError(`event ${name} has two rows`);
    events.set(name, new Set([...(row.get('fields') ?? '').matchAll(/`(\w+)`/g)].map((m) => m[1]!)));
  }
  return events;
}
