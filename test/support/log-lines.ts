/**
 * Checks of the proxy's JSON log lines as a whole test run wrote them (the global teardown applies them to the
 * run's log, test/support/run-log.ts): every line of `gprxy serve` names its `event` (operators filter and alert on
 * it; docs/LOG-EVENTS.md lists them) and no line repeats a key (pino does not merge a line's fields with its
 * logger's bindings, so `{ client }` on a session's line wrote `client` twice; strict JSON parsers refuse that, most
 * keep the last value silently).
 */

/** Keys that occur twice in one object of a JSON text, at any depth (JSON.parse keeps the last and says nothing). */
export function duplicateKeys(json: string): string[] {
  const dups: string[] = [];
  const objects: (Set<string> | undefined)[] = []; // undefined: an array
  let expectKey = false;
  for (let i = 0; i < json.length; i++) {
    const c = json[i];
    if (c === '"') {
      let j = i + 1;
      while (j < json.length && json[j] !== '"') j += json[j] === '\\' ? 2 : 1;
      const top = objects[objects.length - 1];
      if (top && expectKey) {
        const key = JSON.parse(json.slice(i, j + 1)) as string;
        if (top.has(key)) dups.push(key);
        else top.add(key);
        expectKey = false;
      }
      i = j;
    } else if (c === '{') {
      objects.push(new Set());
      expectKey = true;
    } else if (c === '[') {
      objects.push(undefined);
      expectKey = false;
    } else if (c === '}' || c === ']') {
      objects.pop();
      expectKey = false;
    } else if (c === ',') {
      expectKey = objects[objects.length - 1] !== undefined;
    }
  }
  return dups;
}

/** What is wrong with the proxy's lines in a run's log (other lines are left alone), one sentence each. */
export function logLineProblems(text: string): string[] {
  const problems: string[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      continue;
    }
    const record = parsed as Record<string, unknown>;
    if (record.service !== 'gprxy') continue;
    const dups = duplicateKeys(line);
    if (dups.length) problems.push(`a log line repeats ${dups.map((k) => `"${k}"`).join(', ')}: ${line.slice(0, 300)}`);
    if (typeof record.event !== 'string') problems.push(`a log line has no "event": ${line.slice(0, 300)}`);
  }
  return problems;
}
