/**
 * Plays the person at the dev provider's pages: a cookie jar, redirects followed by hand, and HTML forms
 * submitted with the fields a browser would send. It only understands the pages of src/demo/oidc-pages.ts
 * (which name themselves in <meta name="gprxy-page">) plus oidc-provider's auto-submitting form_post page.
 */
import { GprxyError } from '../shared/errors.js';

export interface ParsedForm {
  readonly id: string | undefined;
  readonly action: string;
  readonly method: string;
  readonly fields: Record<string, string>;
}

export interface BrowserResponse {
  readonly url: string;
  readonly status: number;
  readonly body: string;
  /** Set when the flow left the provider's origin (e.g. the redirect to a loopback callback). */
  readonly leftOriginTo?: string;
}

export class ScriptedBrowserError extends GprxyError<'scripted_browser_failed'> {
  readonly code = 'scripted_browser_failed' as const;
}

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

function decodeEntities(value: string): string {
  return value.replace(/&(#x[\da-f]+|#\d+|\w+);/gi, (whole, ref: string) => {
    if (ref[0] === '#') {
      const code = ref[1] === 'x' || ref[1] === 'X' ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10);
      return Number.isFinite(code) ? String.fromCodePoint(code) : whole;
    }
    return ENTITIES[ref.toLowerCase()] ?? whole;
  });
}

function attributes(tag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of tag.matchAll(/([\w.:-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/g)) {
    out[(m[1] as string).toLowerCase()] = decodeEntities(m[2] ?? m[3] ?? '');
  }
  return out;
}

export function parseForms(html: string): ParsedForm[] {
  const forms: ParsedForm[] = [];
  for (const m of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
    const attrs = attributes(m[1] as string);
    const fields: Record<string, string> = {};
    for (const input of (m[2] as string).matchAll(/<input\b([^>]*)>/gi)) {
      const a = attributes(input[1] as string);
      if (a.name !== undefined) fields[a.name] = a.value ?? '';
    }
    forms.push({ id: attrs.id, action: attrs.action ?? '', method: (attrs.method ?? 'get').toLowerCase(), fields });
  }
  return forms;
}

export function pageName(html: string): string | undefined {
  const named = /<meta name="gprxy-page" content="([\w-]+)">/.exec(html)?.[1];
  if (named) return named;
  // oidc-provider's own response_mode=form_post / user_code prefill page submits itself with script.
  if (/<title>Submitting Callback<\/title>/.test(html)) return 'form-post';
  return undefined;
}

export class ScriptedBrowser {
  readonly #origin: string;
  readonly #fetch: typeof fetch;
  readonly #cookies = new Map<string, string>();

  constructor(origin: string, fetchImpl: typeof fetch) {
    this.#origin = new URL(origin).origin;
    this.#fetch = fetchImpl;
  }

  #absorbCookies(headers: Headers): void {
    for (const line of headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const eq = (pair ?? '').indexOf('=');
      if (eq <= 0) continue;
      const name = (pair as string).slice(0, eq).trim();
      const value = (pair as string).slice(eq + 1).trim();
      const expired = attrs.some((a) => /^\s*max-age\s*=\s*0\s*$/i.test(a) || (/^\s*expires\s*=/i.test(a) && Date.parse(a.split('=').slice(1).join('=')) < Date.now()));
      if (expired || value === '') this.#cookies.delete(name);
      else this.#cookies.set(name, value);
    }
  }

  /** GETs or POSTs, following redirects inside the provider's origin; stops at the first one leaving it. */
  async request(url: string, init: { method?: 'GET' | 'POST'; form?: Record<string, string> } = {}): Promise<BrowserResponse> {
    let target = new URL(url, this.#origin).href;
    let method = init.method ?? 'GET';
    let body: string | undefined = init.form ? new URLSearchParams(init.form).toString() : undefined;
    for (let hop = 0; hop < 20; hop++) {
      if (new URL(target).origin !== this.#origin) return { url: target, status: 0, body: '', leftOriginTo: target };
      const headers: Record<string, string> = { accept: 'text/html' };
      if (this.#cookies.size) headers.cookie = [...this.#cookies].map(([k, v]) => `${k}=${v}`).join('; ');
      if (body !== undefined) headers['content-type'] = 'application/x-www-form-urlencoded';
      const res = await this.#fetch(target, { method, headers, body, redirect: 'manual' });
      this.#absorbCookies(res.headers);
      const location = res.headers.get('location');
      if (res.status >= 300 && res.status < 400 && location) {
        await res.arrayBuffer();
        target = new URL(location, target).href;
        // 303 always, and 301/302 after POST in practice, turn into a GET.
        if (res.status !== 307 && res.status !== 308) {
          method = 'GET';
          body = undefined;
        }
        continue;
      }
      return { url: target, status: res.status, body: await res.text() };
    }
    throw new ScriptedBrowserError(`too many redirects starting at ${url}`);
  }

  async submit(from: BrowserResponse, form: ParsedForm, overrides: Record<string, string> = {}): Promise<BrowserResponse> {
    const action = new URL(form.action || from.url, from.url).href;
    const fields = { ...form.fields, ...overrides };
    if (form.method === 'post') return this.request(action, { method: 'POST', form: fields });
    const get = new URL(action);
    for (const [k, v] of Object.entries(fields)) get.searchParams.set(k, v);
    return this.request(get.href);
  }
}

export function findForm(res: BrowserResponse, id?: string): ParsedForm {
  const forms = parseForms(res.body);
  const form = id === undefined ? forms[0] : forms.find((f) => f.id === id);
  if (!form) throw new ScriptedBrowserError(`no form${id ? ` "${id}"` : ''} on ${res.url} (HTTP ${res.status})`);
  return form;
}

/** The visible text of an error paragraph, for failure messages. */
export function errorText(html: string): string | undefined {
  const m = /<p class="error">([\s\S]*?)<\/p>/.exec(html);
  return m ? decodeEntities((m[1] as string).replace(/<[^>]+>/g, '')).trim() : undefined;
}
