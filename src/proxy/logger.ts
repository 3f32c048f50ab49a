/**
 * The proxy's JSON-lines log (pino): operational events and the audit trail (auth_success, auth_failure,
 * session_end, ...) in one stream, each line with an `event` field. Fields that could ever hold a secret
 * are redacted by name as a second line of defence; the first is never putting them in a log call.
 */
import pino, { type DestinationStream, type Logger } from 'pino';

export function createLogger(options: { level: string; file?: string; destination?: DestinationStream }): Logger {
  const destination = options.destination ?? pino.destination({ dest: options.file ?? 1, sync: false, mkdir: true });
  return pino(
    {
      level: options.level,
      base: { service: 'gprxy' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: ['password', 'token_value', 'access_token', 'refresh_token', '*.password', 'secret', '*.secret'], censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}
