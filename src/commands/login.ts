import { Flags } from '@oclif/core';
import { BaseCommand } from '../cli/base-command.js';
import { resolveCliSettings } from '../config/cli-config.js';
import { login, type LoginUi } from '../oauth/cli-session.js';
import { openBrowser } from '../oauth/open-browser.js';
import { profileFlag } from '../cli/flags.js';

/** No display to open a browser on (SSH session, container, CI). */
function headless(): boolean {
  if (process.platform !== 'linux' && process.platform !== 'freebsd' && process.platform !== 'openbsd') return false;
  return !process.env.DISPLAY && !process.env.WAYLAND_DISPLAY;
}

/** A one-line spinner on stderr, only when stderr is a terminal. */
function spinner(text: string): { stop(): void } {
  if (!process.stderr.isTTY) return { stop() {} };
  const frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
  let i = 0;
  const timer = setInterval(() => process.stderr.write(`\r${frames[i++ % frames.length]} ${text}`), 100);
  return {
    stop() {
      clearInterval(timer);
      process.stderr.write(`\r${' '.repeat(text.length + 2)}\r`);
    },
  };
}

export default class Login extends BaseCommand {
  static override description = 'Sign in with your identity provider (device flow by default, or --browser for authorization code + PKCE) and keep the refresh token in the OS keychain';
  static override examples = ['gprxy login', 'gprxy login --no-browser', 'gprxy login --browser', 'gprxy login --insecure-storage   # headless machine without a keychain'];
  static override flags = {
    profile: profileFlag('to log in'),
    device: Flags.boolean({ description: 'device flow: confirm a code in any browser, on any device (default)' }),
    browser: Flags.boolean({
      description: 'authorization code + PKCE through a browser on this machine; --no-browser: device flow without opening a browser',
      allowNo: true,
    }),
    'insecure-storage': Flags.boolean({ description: 'keep tokens in a 0600 file instead of the OS keychain (warned about at every use)', default: false }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Login);
    // Not oclif's `exclusive`: that would also refuse the natural `--device --no-browser`.
    if (flags.device && flags.browser === true) this.usageError('--device and --browser choose different flows: pass one of them');
    const settings = resolveCliSettings({ profile: flags.profile, env: process.env });
    const method = flags.browser === true ? 'browser' : 'device';
    const mayOpen = flags.browser !== false && !headless();

    const abort = new AbortController();
    // Kept until the process ends (not `once`): libraries' exit hooks (conf's when-exit, proper-lockfile's
    // signal-exit) re-send SIGINT to the process, which must end the login with 130, not kill it.
    const onSigint = () => abort.abort();
    process.on('SIGINT', onSigint);
    let spin: { stop(): void } | undefined;
    const ui: LoginUi = {
      deviceCode: (prompt, opened) => {
        this.logToStderr(`To sign in, open this URL in a browser${opened ? ' (opened for you)' : ''}:\n`);
        this.logToStderr(`  ${prompt.verificationUriComplete ?? prompt.verificationUri}\n`);
        this.logToStderr(`and check that it shows the code: ${prompt.userCode}`);
        if (prompt.verificationUriComplete) this.logToStderr(`(or go to ${prompt.verificationUri} and type the code)`);
        this.logToStderr(`The code expires in ${Math.round(prompt.expiresIn / 60)} minutes.`);
      },
      authorizationUrl: (url, opened) => {
        this.logToStderr(opened ? 'Opened your browser to sign in. If it did not open, visit:' : 'To sign in, open this URL in a browser on this machine:');
        this.logToStderr(`\n  ${url}\n`);
      },
      waiting: (active) => {
        if (active) spin ??= spinner('Waiting for you to sign in… (Ctrl+C to cancel)');
        else {
          spin?.stop();
          spin = undefined;
        }
      },
    };
    try {
      const result = await login(
        settings,
        { method, insecureStorage: flags['insecure-storage'], ui, signal: abort.signal, openBrowser: mayOpen ? openBrowser : undefined },
        { warn: (m) => this.logToStderr(`gprxy: warning: ${m}`) },
      );
      const who = result.identity.email ?? result.identity.sub ?? 'unknown';
      this.log(`Logged in to ${result.issuer} as ${who}${result.identity.email && result.identity.sub ? ` (${result.identity.sub})` : ''}`);
      this.log(`Roles: ${result.identity.roles.length ? result.identity.roles.join(', ') : '(none)'}`);
      this.log(`Access token valid until ${new Date(result.expiresAt).toISOString()}; tokens stored in ${result.storedIn}`);
    } finally {
      spin?.stop();
    }
  }
}
