/**
 * A PostgreSQL SQL lexer, small and lossless, for the statement audit trail: it finds literals (to redact
 * them), top-level semicolons (to give each statement of a multi-statement Query its own text) and the
 * leading keyword (to classify a statement that failed before PostgreSQL could tag it).
 *
 * Why our own: redaction is only safe when the lexer agrees with PostgreSQL's (src/backend/parser/scan.l)
 * about where a literal starts and ends, and the maintained npm SQL tokenizers do not: they miss nested
 * block comments, tagged dollar quotes, E'' backslash escapes, U& strings, or `standard_conforming_strings
 * = off` (where '\'' is a complete string). A regex cannot count nested comments. The rules below follow
 * scan.l; where they deliberately differ, they err towards treating more text as a literal (an
 * unterminated string runs to the end; `0x1F` is one number even before PostgreSQL 16).
 *
 * Tokens cover the input exactly (concatenating their text gives it back) and lexing never throws.
 */

export type TokenType =
  | 'space'
  | 'comment'
  | 'identifier'
  | 'quoted_identifier'
  | 'string'
  | 'number'
  | 'parameter'
  | 'operator'
  | 'punctuation'
  | 'semicolon';

export interface Token {
  readonly type: TokenType;
  readonly start: number;
  readonly end: number;
}

export interface LexOptions {
  /** PostgreSQL's standard_conforming_strings (on since 9.1): when off, '…' strings take backslash escapes. */
  readonly standardConformingStrings?: boolean;
}

const enum C {
  TAB = 9,
  LF = 10,
  VT = 11,
  FF = 12,
  CR = 13,
  SPACE = 32,
  DQUOTE = 34,
  DOLLAR = 36,
  AMP = 38,
  QUOTE = 39,
  STAR = 42,
  MINUS = 45,
  DOT = 46,
  SLASH = 47,
  ZERO = 48,
  NINE = 57,
  SEMI = 59,
  BACKSLASH = 92,
  UNDERSCORE = 95,
}

const OPERATOR_CHARS = new Set('+-*/<>=~!@#%^&|`?');
const PUNCTUATION_CHARS = new Set('()[],:.');

function isSpace(c: number): boolean {
  return c === C.SPACE || c === C.TAB || c === C.LF || c === C.CR || c === C.FF || c === C.VT;
}
function isDigit(c: number): boolean {
  return c >= C.ZERO && c <= C.NINE;
}
/** scan.l's ident_start: [A-Za-z\200-\377_]; any non-ASCII code unit counts (UTF-8 lead/continuation bytes do there). */
function isIdentStart(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === C.UNDERSCORE || c >= 0x80;
}
function isIdentCont(c: number): boolean {
  return isIdentStart(c) || isDigit(c) || c === C.DOLLAR;
}
function isHex(c: number): boolean {
  return isDigit(c) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102);
}

/** Splits SQL text into tokens; see the file header. */
export function lex(sql: string, options: LexOptions = {}): Token[] {
  const scs = options.standardConformingStrings ?? true;
  const n = sql.length;
  const out: Token[] = [];
  let i = 0;
  const at = (k: number) => (k < n ? sql.charCodeAt(k) : -1);
  const push = (type: TokenType, start: number, end: number) => out.push({ type, start, end });

  /** A '…' body from `from` (just after the opening quote); returns the index after the closing quote. */
  const quoted = (from: number, backslashEscapes: boolean): number => {
    let k = from;
    while (k < n) {
      const c = sql.charCodeAt(k);
      if (c === C.BACKSLASH && backslashEscapes) k += 2;
      else if (c === C.QUOTE) {
        if (at(k + 1) === C.QUOTE) k += 2;
        else return k + 1;
      } else k++;
    }
    return n;
  };
  /** B'…' and X'…' end at the first quote (scan.l: xbinside/xhinside take no doubled quotes). */
  const bitString = (from: number): number => {
    const close = sql.indexOf("'", from);
    return close < 0 ? n : close + 1;
  };
  const quotedIdentifier = (from: number): number => {
    let k = from;
    while (k < n) {
      if (sql.charCodeAt(k) === C.DQUOTE) {
        if (at(k + 1) === C.DQUOTE) k += 2;
        else return k + 1;
      } else k++;
    }
    return n;
  };
  const digits = (from: number, ok: (c: number) => boolean): number => {
    let k = from;
    while (k < n && (ok(sql.charCodeAt(k)) || (sql.charCodeAt(k) === C.UNDERSCORE && ok(at(k + 1))))) k++;
    return k;
  };
  /** A numeric constant starting at `from` (a digit, or a dot followed by a digit). */
  const numberEnd = (from: number): number => {
    const c1 = at(from + 1) | 0x20;
    if (at(from) === C.ZERO && (c1 === 0x78 || c1 === 0x6f || c1 === 0x62)) {
      const ok = c1 === 0x78 ? isHex : c1 === 0x6f ? (c: number) => c >= C.ZERO && c <= 55 : (c: number) => c === C.ZERO || c === 49;
      const k = digits(from + 2, ok);
      if (k > from + 2) return k;
    }
    let k = digits(from, isDigit);
    // A dot followed by another dot is not a decimal point (`1..2` in some syntaxes); scan.l agrees.
    if (at(k) === C.DOT && at(k + 1) !== C.DOT) k = digits(k + 1, isDigit);
    const e = at(k) | 0x20;
    if (e === 0x65) {
      let m = k + 1;
      if (at(m) === 43 || at(m) === C.MINUS) m++;
      if (isDigit(at(m))) k = digits(m, isDigit);
    }
    return k;
  };
  /** `$tag$` at `from`? Returns the delimiter, or undefined. */
  const dollarTag = (from: number): string | undefined => {
    let k = from + 1;
    if (at(k) === C.DOLLAR) return '$$';
    if (!isIdentStart(at(k))) return undefined;
    while (k < n && (isIdentStart(sql.charCodeAt(k)) || isDigit(sql.charCodeAt(k)))) k++;
    return at(k) === C.DOLLAR ? sql.slice(from, k + 1) : undefined;
  };

  while (i < n) {
    const c = sql.charCodeAt(i);
    const start = i;
    if (isSpace(c)) {
      while (i < n && isSpace(sql.charCodeAt(i))) i++;
      push('space', start, i);
    } else if (c === C.MINUS && at(i + 1) === C.MINUS) {
      while (i < n && sql.charCodeAt(i) !== C.LF && sql.charCodeAt(i) !== C.CR) i++;
      push('comment', start, i);
    } else if (c === C.SLASH && at(i + 1) === C.STAR) {
      // Block comments nest in PostgreSQL (unlike the SQL standard's reading in most tools).
      let depth = 1;
      i += 2;
      while (i < n && depth > 0) {
        if (sql.charCodeAt(i) === C.SLASH && at(i + 1) === C.STAR) {
          depth++;
          i += 2;
        } else if (sql.charCodeAt(i) === C.STAR && at(i + 1) === C.SLASH) {
          depth--;
          i += 2;
        } else i++;
      }
      push('comment', start, Math.min(i, n));
    } else if (c === C.QUOTE) {
      i = quoted(i + 1, !scs);
      push('string', start, i);
    } else if (c === C.DQUOTE) {
      i = quotedIdentifier(i + 1);
      push('quoted_identifier', start, i);
    } else if (isIdentStart(c)) {
      const lower = c | 0x20;
      const next = at(i + 1);
      if ((lower === 0x65 || lower === 0x6e) && next === C.QUOTE) {
        // E'…' always takes backslash escapes; N'…' is a plain string.
        i = quoted(i + 2, lower === 0x65 || !scs);
        push('string', start, i);
      } else if ((lower === 0x62 || lower === 0x78) && next === C.QUOTE) {
        i = bitString(i + 2);
        push('string', start, i);
      } else if (lower === 0x75 && next === C.AMP && at(i + 2) === C.QUOTE) {
        // U&'…': backslash starts a Unicode escape, never escapes the quote.
        i = quoted(i + 3, false);
        push('string', start, i);
      } else if (lower === 0x75 && next === C.AMP && at(i + 2) === C.DQUOTE) {
        i = quotedIdentifier(i + 3);
        push('quoted_identifier', start, i);
      } else {
        i++;
        while (i < n && isIdentCont(sql.charCodeAt(i))) i++;
        push('identifier', start, i);
      }
    } else if (isDigit(c) || (c === C.DOT && isDigit(at(i + 1)))) {
      i = numberEnd(i);
      push('number', start, i);
    } else if (c === C.DOLLAR) {
      if (isDigit(at(i + 1))) {
        i++;
        while (i < n && isDigit(sql.charCodeAt(i))) i++;
        push('parameter', start, i);
      } else {
        const tag = dollarTag(i);
        if (tag) {
          const close = sql.indexOf(tag, i + tag.length);
          i = close < 0 ? n : close + tag.length;
          push('string', start, i);
        } else {
          i++;
          push('operator', start, i);
        }
      }
    } else if (c === C.SEMI) {
      i++;
      push('semicolon', start, i);
    } else if (OPERATOR_CHARS.has(sql[i]!)) {
      // An operator never swallows the start of a comment (scan.l cuts it before "--" or "/*").
      i++;
      while (i < n && OPERATOR_CHARS.has(sql[i]!)) {
        const d = sql.charCodeAt(i);
        if ((d === C.MINUS && at(i + 1) === C.MINUS) || (d === C.SLASH && at(i + 1) === C.STAR)) break;
        i++;
      }
      push('operator', start, i);
    } else if (PUNCTUATION_CHARS.has(sql[i]!)) {
      i++;
      if (c === 58 && (at(i) === 58 || at(i) === 61)) i++; // :: and :=
      push('punctuation', start, i);
    } else {
      // Anything else (a stray byte PostgreSQL would reject) stands alone and is kept.
      i++;
      push('operator', start, i);
    }
  }
  return out;
}

/**
 * The text with every string, bit-string, dollar-quoted and numeric constant replaced by a parameter
 * symbol `$n`, numbered after the highest `$n` already in the text (as pg_stat_statements does).
 */
export function redactLiterals(sql: string, options: LexOptions = {}): string {
  const tokens = lex(sql, options);
  let next = 1;
  for (const t of tokens) if (t.type === 'parameter') next = Math.max(next, Number(sql.slice(t.start + 1, t.end)) + 1);
  let out = '';
  for (const t of tokens) out += t.type === 'string' || t.type === 'number' ? `$${next++}` : sql.slice(t.start, t.end);
  return out;
}

/**
 * The statements of a simple-protocol Query string, split at top-level semicolons, trimmed, empty ones
 * dropped (PostgreSQL runs nothing for them). The body of `CREATE [OR REPLACE] FUNCTION|PROCEDURE …
 * BEGIN ATOMIC … END` contains semicolons that do not end the statement; like psql (psqlscan.l) we count
 * BEGIN/CASE … END inside such a statement.
 */
export function splitStatements(sql: string, options: LexOptions = {}): string[] {
  const tokens = lex(sql, options);
  const out: string[] = [];
  let from = -1;
  let last = -1;
  let parens = 0;
  let beginDepth = 0;
  const words: string[] = [];
  const flush = () => {
    if (from >= 0) out.push(sql.slice(from, last));
    from = -1;
    last = -1;
    parens = 0;
    beginDepth = 0;
    words.length = 0;
  };
  for (const t of tokens) {
    if (t.type === 'space' || t.type === 'comment') continue;
    if (t.type === 'semicolon' && parens === 0 && beginDepth === 0) {
      flush();
      continue;
    }
    if (from < 0) from = t.start;
    last = t.end;
    if (t.type === 'punctuation') {
      const ch = sql[t.start];
      if (ch === '(') parens++;
      else if (ch === ')' && parens > 0) parens--;
    } else if (t.type === 'identifier') {
      const word = sql.slice(t.start, t.end).toLowerCase();
      if (word === 'begin' || word === 'case') {
        if (inRoutineDefinition(words)) beginDepth++;
      } else if (word === 'end' && beginDepth > 0) beginDepth--;
      if (words.length < 4) words.push(word);
    }
  }
  flush();
  return out;
}

function inRoutineDefinition(words: readonly string[]): boolean {
  if (words[0] !== 'create') return false;
  const kind = words[1] === 'or' ? words[3] : words[1];
  return kind === 'function' || kind === 'procedure';
}

/** The first keyword of a statement, upper-cased ('' when it starts with something else, e.g. a parenthesis). */
export function leadingKeyword(sql: string): string {
  const n = sql.length;
  let i = 0;
  for (;;) {
    while (i < n && isSpace(sql.charCodeAt(i))) i++;
    if (sql.startsWith('--', i)) {
      while (i < n && sql.charCodeAt(i) !== C.LF && sql.charCodeAt(i) !== C.CR) i++;
    } else if (sql.startsWith('/*', i)) {
      let depth = 1;
      i += 2;
      while (i < n && depth > 0) {
        if (sql.startsWith('/*', i)) {
          depth++;
          i += 2;
        } else if (sql.startsWith('*/', i)) {
          depth--;
          i += 2;
        } else i++;
      }
    } else break;
  }
  if (i >= n || !isIdentStart(sql.charCodeAt(i))) return '';
  // E'…', U&'…' and friends are strings, not keywords.
  const next = i + 1 < n ? sql.charCodeAt(i + 1) : -1;
  if (next === C.QUOTE || next === C.AMP) return '';
  const start = i;
  while (i < n && isIdentCont(sql.charCodeAt(i))) i++;
  return sql.slice(start, i).toUpperCase();
}
