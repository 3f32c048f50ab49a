/** Errors of `gprxy demo`: each message says what went wrong and, where it helps, what to do. */
export type DemoErrorCode = 'demo_aborted' | 'demo_approval_failed' | 'demo_step_failed' | 'demo_packages_missing' | 'demo_native_unavailable';

export class DemoError extends Error {
  constructor(
    readonly code: DemoErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'DemoError';
  }
}
