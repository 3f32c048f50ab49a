/**
 * The dev provider's HTML: sign-in, consent and the device-code pages. Plain forms with no script, so
 * they work for a person in a real browser and for the scripted browser in the tests alike. Every page
 * names itself in <meta name="gprxy-page"> so the scripted browser knows where it is.
 */

export type PageName = 'login' | 'consent' | 'device-input' | 'device-confirm' | 'device-success' | 'error';

export function escapeHtml(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const STYLE = `
  *{box-sizing:border-box}
  body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;background:#f3f4f6;
    font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#111827}
  main{width:min(360px,92vw);background:#fff;border-radius:10px;box-shadow:0 1px 3px rgba(0,0,0,.12);padding:28px}
  h1{font-size:20px;margin:0 0 4px}
  .sub{color:#6b7280;margin:0 0 20px;font-size:13px}
  label{display:block;font-size:13px;margin:12px 0 4px;color:#374151}
  input[type=text],input[type=password]{width:100%;padding:9px 10px;border:1px solid #d1d5db;border-radius:6px;font-size:15px}
  input[name=user_code]{text-transform:uppercase;letter-spacing:.15em;text-align:center;font-size:18px}
  button{width:100%;margin-top:16px;padding:10px;border:0;border-radius:6px;background:#2563eb;color:#fff;font-size:15px;cursor:pointer}
  button.secondary{background:#fff;color:#374151;border:1px solid #d1d5db;margin-top:8px}
  .error{background:#fef2f2;color:#991b1b;border-radius:6px;padding:8px 10px;font-size:13px;margin:0 0 8px}
  .code{font:600 24px/1 ui-monospace,monospace;letter-spacing:.15em;text-align:center;padding:12px;background:#f9fafb;border-radius:6px}
  ul{padding-left:18px;margin:8px 0} .hint{margin-top:18px;font-size:12px;color:#6b7280}
  code{font:12px ui-monospace,monospace}`;

function page(name: PageName, title: string, body: string): string {
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="gprxy-page" content="${name}"><title>${escapeHtml(title)} · gprxy dev provider</title><style>${STYLE}</style></head>
<body><main>${body}</main></body></html>`;
}

export interface LoginPageInput {
  action: string;
  clientName: string;
  error?: string;
  username?: string;
  /** Shown under the form: the dev users a person may sign in as. */
  hintUsers: readonly { username: string; password: string; roles: readonly string[] }[];
}

export function loginPage(input: LoginPageInput): string {
  const hint = input.hintUsers.length
    ? `<div class="hint">Dev users:<ul>${input.hintUsers
        .map((u) => `<li><code>${escapeHtml(u.username)}</code> / <code>${escapeHtml(u.password)}</code> (${escapeHtml(u.roles.join(', '))})</li>`)
        .join('')}</ul></div>`
    : '';
  return page(
    'login',
    'Sign in',
    `<h1>Sign in</h1><p class="sub">to continue to ${escapeHtml(input.clientName)}</p>
${input.error ? `<p class="error">${escapeHtml(input.error)}</p>` : ''}
<form id="login" method="post" action="${escapeHtml(input.action)}" autocomplete="off">
<label for="username">Username</label><input id="username" type="text" name="username" value="${escapeHtml(input.username ?? '')}" autofocus required>
<label for="password">Password</label><input id="password" type="password" name="password" required>
<button type="submit">Sign in</button></form>${hint}`,
  );
}

export interface ConsentPageInput {
  allowAction: string;
  denyAction: string;
  clientName: string;
  username: string;
  scopes: readonly string[];
  audience?: string;
}

export function consentPage(input: ConsentPageInput): string {
  const scopes = input.scopes.length ? `<ul>${input.scopes.map((s) => `<li><code>${escapeHtml(s)}</code></li>`).join('')}</ul>` : '';
  return page(
    'consent',
    'Authorize',
    `<h1>Authorize ${escapeHtml(input.clientName)}</h1>
<p class="sub">Signed in as <strong>${escapeHtml(input.username)}</strong></p>
<p>${escapeHtml(input.clientName)} asks to act as you${input.audience ? ` at <code>${escapeHtml(input.audience)}</code>` : ''}.</p>${scopes}
<form id="allow" method="post" action="${escapeHtml(input.allowAction)}"><button type="submit">Allow</button></form>
<form id="deny" method="post" action="${escapeHtml(input.denyAction)}"><button class="secondary" type="submit">Deny</button></form>`,
  );
}

/** `form` is the <form id="op.deviceInputForm"> markup oidc-provider generates (it carries the xsrf token). */
export function deviceInputPage(form: string, error?: string): string {
  return page(
    'device-input',
    'Device sign-in',
    `<h1>Device sign-in</h1><p class="sub">Enter the code shown in your terminal.</p>
${error ? `<p class="error">${escapeHtml(error)}</p>` : ''}${form}
<button type="submit" form="op.deviceInputForm">Continue</button>`,
  );
}

export function deviceConfirmPage(form: string, clientName: string, userCode: string): string {
  return page(
    'device-confirm',
    'Confirm device',
    `<h1>Confirm device</h1><p class="sub">${escapeHtml(clientName)} wants to sign in.</p>
<p>Check that your terminal shows this code:</p><div class="code">${escapeHtml(userCode)}</div>${form}
<button type="submit" form="op.deviceConfirmForm">Continue</button>
<button class="secondary" type="submit" form="op.deviceConfirmForm" name="abort" value="yes">Cancel</button>`,
  );
}

export function deviceSuccessPage(clientName: string): string {
  return page(
    'device-success',
    'Signed in',
    `<h1>You are signed in</h1><p>${escapeHtml(clientName)} received your sign-in. You can close this window and return to the terminal.</p>`,
  );
}

export function errorPage(error: string, description?: string): string {
  return page(
    'error',
    'Error',
    `<h1>Something went wrong</h1><p class="error">${escapeHtml(error)}${description ? `: ${escapeHtml(description)}` : ''}</p>
<p class="sub">Start the sign-in again from your terminal.</p>`,
  );
}
