import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { leadingKeyword, lex, redactLiterals, splitStatements, type TokenType } from '../../../src/proxy/statement-audit/sql-lexer.js';

const kinds = (sql: string, scs = true) => lex(sql, { standardConformingStrings: scs }).filter((t) => t.type !== 'space').map((t) => [t.type, sql.slice(t.start, t.end)]);

describe('sql lexer: PostgreSQL lexical rules', () => {
  const table: [string, string, [TokenType, string][], boolean?][] = [
    ['plain string with doubled quote', "select 'it''s'", [['identifier', 'select'], ['string', "'it''s'"]]],
    ['backslash is a plain character with standard_conforming_strings on', "select 'a\\' , 1", [['identifier', 'select'], ['string', "'a\\'"], ['punctuation', ','], ['number', '1']]],
    ['backslash escapes the quote with standard_conforming_strings off', "select 'a\\' , 1'", [['identifier', 'select'], ['string', "'a\\' , 1'"]], false],
    ['E string with backslash escapes', "select E'a\\'b', e'\\\\'", [['identifier', 'select'], ['string', "E'a\\'b'"], ['punctuation', ','], ['string', "e'\\\\'"]]],
    ['N, B and X strings', "select N'n', B'0101', x'1F'", [['identifier', 'select'], ['string', "N'n'"], ['punctuation', ','], ['string', "B'0101'"], ['punctuation', ','], ['string', "x'1F'"]]],
    ['an identifier ending in e is not an E prefix', "select somee 'x'", [['identifier', 'select'], ['identifier', 'somee'], ['string', "'x'"]]],
    ['U& string: backslash does not escape the quote', "select U&'d\\0061t\\+000061'", [['identifier', 'select'], ['string', "U&'d\\0061t\\+000061'"]]],
    ['U& quoted identifier', 'select U&"d\\0061t" from t', [['identifier', 'select'], ['quoted_identifier', 'U&"d\\0061t"'], ['identifier', 'from'], ['identifier', 't']]],
    ['dollar quote', 'select $$it\'s -- not a comment$$', [['identifier', 'select'], ['string', "$$it's -- not a comment$$"]]],
    ['tagged dollar quote containing $$', 'select $fn$ a $$ b $x$ c $fn$', [['identifier', 'select'], ['string', '$fn$ a $$ b $x$ c $fn$']]],
    ['parameter, not a dollar quote', 'select $1, $23', [['identifier', 'select'], ['parameter', '$1'], ['punctuation', ','], ['parameter', '$23']]],
    ['identifiers may contain $', 'select a$b$ from t', [['identifier', 'select'], ['identifier', 'a$b$'], ['identifier', 'from'], ['identifier', 't']]],
    ['quoted identifier with doubled quote and a quote inside', 'select "a""b\'c"', [['identifier', 'select'], ['quoted_identifier', '"a""b\'c"']]],
    ['nested block comments', "select /* a /* 'b' */ c */ 1", [['identifier', 'select'], ['comment', "/* a /* 'b' */ c */"], ['number', '1']]],
    ['line comment', "select 1 -- 'x'\n, 2", [['identifier', 'select'], ['number', '1'], ['comment', "-- 'x'"], ['punctuation', ','], ['number', '2']]],
    ['an operator stops before a comment', 'select 1+--c\n2', [['identifier', 'select'], ['number', '1'], ['operator', '+'], ['comment', '--c'], ['number', '2']]],
    ['numbers', 'select 1e5, .5, 1.5e-3, 0x1F, 0o17, 0b101, 1_000, 12.', [
      ['identifier', 'select'], ['number', '1e5'], ['punctuation', ','], ['number', '.5'], ['punctuation', ','], ['number', '1.5e-3'], ['punctuation', ','],
      ['number', '0x1F'], ['punctuation', ','], ['number', '0o17'], ['punctuation', ','], ['number', '0b101'], ['punctuation', ','], ['number', '1_000'], ['punctuation', ','], ['number', '12.'],
    ]],
    ['qualified names and casts', "select t.a::text, '1'::int", [['identifier', 'select'], ['identifier', 't'], ['punctuation', '.'], ['identifier', 'a'], ['punctuation', '::'], ['identifier', 'text'], ['punctuation', ','], ['string', "'1'"], ['punctuation', '::'], ['identifier', 'int']]],
    ['unterminated string runs to the end', "select 'abc", [['identifier', 'select'], ['string', "'abc"]]],
    ['unterminated comment runs to the end', 'select /* a /* b */', [['identifier', 'select'], ['comment', '/* a /* b */']]],
  ];
  it.each(table)('%s', (_name, sql, expected, scs = true) => {
    expect(kinds(sql, scs)).toEqual(expected);
  });
});

describe('redactLiterals', () => {
  const table: [string, string, boolean?][] = [
    ["select * from t where a = 'x' and b = 42", 'select * from t where a = $1 and b = $2'],
    ["select $1, 'x', 3.5", 'select $1, $2, $3'],
    ["insert into t values (E'it\\'s', $tag$ secret; $$ $tag$, -1e5, x'ff')", 'insert into t values ($1, $2, -$3, $4)'],
    ["select 'a\\', 'b'", 'select $1, $2'],
    // With backslash escapes the first string runs to the second quote; then b'… is a bit string.
    ["select 'a\\', 'b'", 'select $1$2', false],
    ["select 1 /* 'kept' */ -- 'kept too'", "select $1 /* 'kept' */ -- 'kept too'"],
    ['select "Col 1" from "T"', 'select "Col 1" from "T"'],
    ["select interval '1 day', date '2024-01-01'", 'select interval $1, date $2'],
  ];
  it.each(table)('%s', (sql, expected, scs = true) => {
    expect(redactLiterals(sql, { standardConformingStrings: scs })).toBe(expected);
  });
});

describe('splitStatements', () => {
  it('splits at top-level semicolons, not inside literals, comments or parentheses', () => {
    expect(splitStatements("select 1; select ';' /* ; */ ; ; insert into t values ('a;b');")).toEqual(["select 1", "select ';'", "insert into t values ('a;b')"]);
  });
  it('keeps a BEGIN ATOMIC routine body in one statement', () => {
    const sql = 'create or replace function f() returns int language sql begin atomic select 1; select case when true then 2 end; end; select f()';
    expect(splitStatements(sql)).toEqual(['create or replace function f() returns int language sql begin atomic select 1; select case when true then 2 end; end', 'select f()']);
  });
  it('does not treat BEGIN as a block outside a routine definition', () => {
    expect(splitStatements('begin; select 1; commit')).toEqual(['begin', 'select 1', 'commit']);
  });
  it('gives no statement for empty input', () => {
    expect(splitStatements(' ; -- nothing\n')).toEqual([]);
  });
});

describe('leadingKeyword', () => {
  it('skips comments and space', () => {
    expect(leadingKeyword('/* x */ -- y\n  delete from t')).toBe('DELETE');
    expect(leadingKeyword('(select 1)')).toBe('');
    expect(leadingKeyword('/* a /* nested */ still comment */ create table t (a int)')).toBe('CREATE');
    expect(leadingKeyword("E'x'")).toBe('');
  });
});

// Property tests: statements are built from tokens, literals carry a marker no other token can contain.
const MARK = '§';
const plainChars = fc.constantFrom(...'abcXYZ019 _;,.()\'"\\$-/*\n\t'.split(''), 'é', '€');
const content = fc.array(fc.oneof(plainChars, fc.constant(MARK)), { maxLength: 12 }).map((cs) => MARK + cs.join(''));
const safeWordChars = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz_'.split(''));

function literal(scs: boolean): fc.Arbitrary<string> {
  return fc.oneof(
    content.map((s) => `'${s.replaceAll("'", "''").replaceAll('\\', scs ? '\\' : '\\\\')}'`),
    content.map((s) => `E'${s.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`),
    content.map((s) => `N'${s.replaceAll("'", "''").replaceAll('\\', scs ? '\\' : '\\\\')}'`),
    content.map((s) => `U&'${s.replaceAll("'", "''").replaceAll('\\', '\\\\')}'`),
    fc.tuple(fc.constantFrom('', 'q', 'body', '_x1'), content).filter(([tag, s]) => !`${s}$`.includes(`$${tag}$`)).map(([tag, s]) => `$${tag}$${s}$${tag}$`),
    fc.constantFrom("B'" + MARK + "'", "X'" + MARK + "'"),
  );
}
// Numbers are literals too: digits are never in the other tokens, so "no digit survives" checks them.
const numberLiteral = fc.constantFrom('1', '42', '1e5', '.5', '3.14', '1.5E-3', '0x1F', '0o17', '0b101', '1_000', '007');
const other = fc.oneof(
  fc.array(safeWordChars, { minLength: 1, maxLength: 8 }).map((cs) => cs.join('')).filter((w) => !/^[ebnxu]$/i.test(w)),
  fc.constantFrom('(', ')', ',', '::', ';', '+', '-', '*', '<>', '||', '=', '.'),
  fc.array(fc.constantFrom(...'ab "\'$;'.split('')), { maxLength: 8 }).map((cs) => `"${cs.join('').replaceAll('"', '""')}"`),
  fc.array(fc.constantFrom(...'ab \'"$;'.split('')), { maxLength: 8 }).map((cs) => `/* ${cs.join('')} /* nested */ */`),
  fc.array(fc.constantFrom(...'ab \'"$;'.split('')), { maxLength: 8 }).map((cs) => `-- ${cs.join('')}\n`),
);

function statement(scs: boolean): fc.Arbitrary<string> {
  return fc.array(fc.oneof(literal(scs), numberLiteral, other, other), { minLength: 1, maxLength: 20 }).map((parts) => parts.join(' '));
}

describe('sql lexer properties', () => {
  it('tokens cover any input exactly, in order, and lexing never throws', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), fc.boolean(), (s, scs) => {
        const tokens = lex(s, { standardConformingStrings: scs });
        let at = 0;
        for (const t of tokens) {
          expect(t.start).toBe(at);
          expect(t.end).toBeGreaterThan(t.start);
          at = t.end;
        }
        expect(at).toBe(s.length);
      }),
      { numRuns: 2000 },
    );
  });

  for (const scs of [true, false]) {
    it(`no literal survives redaction (standard_conforming_strings ${scs ? 'on' : 'off'})`, () => {
      fc.assert(
        fc.property(statement(scs), (sql) => {
          const redacted = redactLiterals(sql, { standardConformingStrings: scs });
          expect(redacted).not.toContain(MARK);
          // Digits only appear in numeric literals and in the $n the redaction writes.
          expect(redacted.replace(/\$\d+/g, '')).not.toMatch(/\d/);
        }),
        { numRuns: 3000 },
      );
    });
  }

  it('redaction is idempotent and keeps every non-literal token', () => {
    fc.assert(
      fc.property(statement(true), (sql) => {
        const once = redactLiterals(sql);
        expect(redactLiterals(once)).toBe(once);
        const keep = (s: string) => lex(s).filter((t) => t.type !== 'string' && t.type !== 'number' && t.type !== 'parameter').map((t) => s.slice(t.start, t.end));
        expect(keep(once)).toEqual(keep(sql));
      }),
      { numRuns: 1000 },
    );
  });

  it('a redacted statement of any bytes never contains the text of a string token', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 120 }), fc.boolean(), (s, scs) => {
        const redacted = redactLiterals(s, { standardConformingStrings: scs });
        for (const t of lex(s, { standardConformingStrings: scs })) {
          if (t.type === 'string' && t.end - t.start > 6) expect(redacted).not.toContain(s.slice(t.start, t.end));
        }
      }),
      { numRuns: 2000 },
    );
  });
});
