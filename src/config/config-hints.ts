/**
 * Hints for config errors: the closest known key for an unknown one ("did you mean"), found by walking the
 * zod schema at the key's path, and the line of a key in the YAML source (from the `yaml` package's node
 * ranges), so a typo is fixed without hunting for it.
 */
import { isMap, isScalar, LineCounter, parseDocument, type Document } from 'yaml';
import type { z } from 'zod';

export type ConfigPath = readonly PropertyKey[];
/** The 1-based line of the key at `path` in the source, when known. */
export type LocateKey = (path: ConfigPath) => number | undefined;

interface Def {
  type: string;
  shape?: Record<string, z.ZodType>;
  innerType?: z.ZodType;
  element?: z.ZodType;
  valueType?: z.ZodType;
  in?: z.ZodType;
  options?: z.ZodType[];
}

function defOf(schema: z.ZodType): Def {
  return (schema as unknown as { _zod: { def: Def } })._zod.def;
}

/** The schema an object at `path` is validated by, unwrapping optional/default/pipe. */
function schemaAt(schema: z.ZodType, path: ConfigPath): z.ZodType | undefined {
  let s: z.ZodType | undefined = schema;
  for (let i = 0; s !== undefined; ) {
    const def = defOf(s);
    if (def.innerType) s = def.innerType;
    else if (def.type === 'pipe' && def.in) s = def.in;
    else if (i === path.length) return s;
    else if (def.type === 'object') s = def.shape?.[String(path[i++])];
    else if (def.type === 'array') {
      s = def.element;
      i++;
    } else if (def.type === 'record') {
      s = def.valueType;
      i++;
    }
    else return undefined;
  }
  return undefined;
}

export function knownKeys(schema: z.ZodType, path: ConfigPath): string[] {
  const s = schemaAt(schema, path);
  if (!s) return [];
  const def = defOf(s);
  return def.type === 'object' && def.shape ? Object.keys(def.shape) : [];
}

function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = row;
  }
  return prev[b.length]!;
}

/** The known key closest to `key`, if it is close enough to be a plausible typo. */
export function closestKey(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const d = distance(key.toLowerCase(), k.toLowerCase());
    if (d < bestD) {
      best = k;
      bestD = d;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined;
}

/** Parses YAML (or JSON) keeping positions; the locator answers the line of a key by its path. */
export function parseWithPositions(text: string): { document: unknown; locate: LocateKey } {
  const lineCounter = new LineCounter();
  const doc: Document = parseDocument(text, { prettyErrors: true, lineCounter });
  if (doc.errors.length > 0) throw doc.errors[0]!;
  const locate: LocateKey = (path) => {
    if (path.length === 0) return undefined;
    const parent = path.length === 1 ? doc.contents : doc.getIn(path.slice(0, -1) as unknown[], true);
    if (!isMap(parent)) return undefined;
    const last = String(path[path.length - 1]);
    const pair = parent.items.find((p) => isScalar(p.key) && String(p.key.value) === last);
    const offset = pair && isScalar(pair.key) ? pair.key.range?.[0] : undefined;
    return offset === undefined ? undefined : lineCounter.linePos(offset).line;
  };
  return { document: doc.toJS(), locate };
}
