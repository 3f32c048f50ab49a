/** Errors of `gprxy demo`: each message says what went wrong and, where it helps, what to do. */
import { GprxyError } from '../shared/errors.js';

export type DemoErrorCode = 'demo_aborted' | 'demo_approval_failed' | 'demo_step_failed' | 'demo_packages_missing' | 'demo_native_unavailable';

export class DemoError extends GprxyError<DemoErrorCode> {
  constructor(
    readonly code: DemoErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
