/**
 * Opens a URL in the person's browser with the platform's opener. Best effort: false when nothing could
 * be started (the caller has printed the URL anyway). Whether a browser can open at all (a display on
 * Linux, --no-browser) is the command's decision.
 */
import { spawn } from 'node:child_process';

function opener(platform: NodeJS.Platform, url: string): { command: string; args: string[] } {
  if (platform === 'darwin') return { command: 'open', args: [url] };
  // `start` treats its first quoted argument as a window title; the empty one keeps the URL an URL.
  if (platform === 'win32') return { command: 'cmd', args: ['/c', 'start', '""', url.replace(/&/g, '^&')] };
  return { command: 'xdg-open', args: [url] };
}

export function openBrowser(url: string, platform: NodeJS.Platform = process.platform): Promise<boolean> {
  if (!/^https?:\/\//.test(url)) return Promise.resolve(false);
  const { command, args } = opener(platform, url);
  return new Promise((resolve) => {
    try {
      const child = spawn(command, args, { stdio: 'ignore', detached: true, windowsVerbatimArguments: platform === 'win32' });
      child.once('error', () => resolve(false));
      child.once('spawn', () => {
        child.unref();
        resolve(true);
      });
    } catch {
      resolve(false);
    }
  });
}
