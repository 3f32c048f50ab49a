/**
 * Ending a relayed session where a FATAL can be injected without splitting one of the server's messages, for
 * session and transaction pooling alike. A client that stops reading mid-result would postpone that for
 * ever, so after the grace period the connection is cut (`forced`: no FATAL can be sent any more).
 */

/** How long a stop waits for the client to reach a message boundary before the connection is cut. */
export const STOP_GRACE_MS = 5_000;

export interface StoppableRelay {
  readonly clientAtBoundary: boolean;
  stop(): void;
}

export class BoundaryStop<R extends string> {
  /** A stop was asked for (maybe before the relay started: the caller asks again once it has one). */
  requested = false;
  /** The first reason asked for: the one the client hears and the audit log records. */
  reason: R | undefined;
  /** The relay was cut mid-message. */
  forced = false;
  private deadline = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly now: () => number) {}

  request(reason: R, relay: StoppableRelay | undefined): void {
    this.requested = true;
    this.reason ??= reason;
    if (!relay) return;
    this.deadline ||= this.now() + STOP_GRACE_MS;
    if (relay.clientAtBoundary) relay.stop();
    else if (this.now() >= this.deadline) {
      this.forced = true;
      relay.stop();
    } else this.timer = setTimeout(() => this.request(reason, relay), 20);
  }

  /** The relay ended: no retry may fire on it. */
  clear(): void {
    clearTimeout(this.timer);
  }
}
