/**
 * The proxy's JSON-lines log (pino): operational events and the audit trail (auth_success, auth_failure,
 * session_end, ...) in one stream, each line with an `event` field. Fields that could ever hold a secret
 * are redacted by name as a second line of defence; the first is never putting them in a log call.
 *
 * Lines are written in batches (up to 4 KiB or 100 ms), not one write system call each: the last
 * benchmark's profile put the two per-session lines at ~11 % of the proxy's CPU per connection. An
 * error or fatal line is written at once, with what is buffered before it. With `--workers`, workers
 * send their batches to the primary (src/proxy/cluster/), which writes the one stream.
 */
import pino, { type DestinationStream, type Logger } from 'pino';

/** How long a line may wait in the batch. */
export const LOG_FLUSH_MS = 100;
const BATCH_BYTES = 4096;

/** A destination that batches; `flush()` writes what is buffered, `flushSync()` too, before an exit. */
export interface LogDestination extends DestinationStream {
  flush(): void;
  flushSync(): void;
}

/** Whether a serialized line must not wait (pino's level label, formatters below). */
function urgent(line: string): boolean {
  return line.includes('"level":"error"') || line.includes('"level":"fatal"');
}

/** stdout (fd 1) or a file, appended to, batched. */
export function fileDestination(file?: string): LogDestination {
  const boom = pino.destination({ dest: file ?? 1, sync: false, mkdir: true, minLength: BATCH_BYTES });
  const timer = setInterval(() => boom.flush(), LOG_FLUSH_MS);
  timer.unref();
  return {
    write(line: string) {
      boom.write(line);
      if (urgent(line)) boom.flush();
    },
    flush: () => boom.flush(),
    flushSync: () => {
      try {
        boom.flushSync();
      } catch {
        // Not ready yet (the file is still opening) or already closed: nothing we can write now.
      }
    },
  };
}

/** Batches lines for `send` (a worker's IPC link to the primary). */
export function batchingDestination(send: (text: string) => void): LogDestination {
  let buffered = '';
  const flush = () => {
    if (!buffered) return;
    const text = buffered;
    buffered = '';
    send(text);
  };
  const timer = setInterval(flush, LOG_FLUSH_MS);
  timer.unref();
  return {
    write(line: string) {
      buffered += line;
      if (buffered.length >= BATCH_BYTES || urgent(line)) flush();
    },
    flush,
    flushSync: flush,
  };
}

export function createLogger(options: { level: string; file?: string; destination?: DestinationStream; base?: Record<string, unknown> }): Logger {
  const destination = options.destination ?? fileDestination(options.file);
  return pino(
    {
      level: options.level,
      base: { service: 'gprxy', ...options.base },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: ['password', 'token_value', 'access_token', 'refresh_token', '*.password', 'secret', '*.secret'], censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}
