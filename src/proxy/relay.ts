/**
 * The hot path: after authentication, bytes flow client ⇄ backend untouched. Per chunk we read message
 * headers only (MessageScanner) to know (a) when the client sends Terminate, which we swallow so the
 * backend can return to the pool, and (b) whether the backend is idle (ReadyForQuery 'I' with no request
 * outstanding) when the client leaves, which decides whether the backend may be reused; (c) the server's
 * ParameterStatus messages, the only bodies read (rare: sent when a reported setting such as
 * application_name changes), so the proxy can audit who renames their session.
 * Backpressure: when one side's write buffer is full we pause the other side until 'drain'.
 * A session of an audited database (audit.statements ≠ none) passes a RelayTap: then other handlers, which
 * show each chunk to the tap first, are attached instead; the header-only handlers stay as they are.
 */
import type { Socket } from 'node:net';
import { MessageScanner } from '../protocol/message-scanner.js';
import { BackendCode, FrontendCode, ReadyStatus } from '../protocol/codes.js';
import type { RelayProbe } from './session-registry.js';

export type RelayEndReason = 'client_terminate' | 'client_closed' | 'client_error' | 'backend_closed' | 'backend_error' | 'protocol_error' | 'stopped';

export interface RelayResult {
  readonly reason: RelayEndReason;
  /** The backend is idle at a message boundary with no request outstanding: safe to reset and reuse. */
  readonly backendIdle: boolean;
  readonly bytesFromClient: number;
  readonly bytesFromBackend: number;
  readonly error?: string;
}

/** Sees every chunk before it is forwarded (the statement audit). A throw ends the session: fail closed. */
export interface RelayTap {
  fromClient(chunk: Buffer): void;
  fromBackend(chunk: Buffer): void;
}

const READY_STATUS_IDLE = ReadyStatus.IDLE;
// Client messages that each produce exactly one ReadyForQuery: Query, Sync, FunctionCall.
const CLIENT_SYNC_TYPES = [FrontendCode.QUERY, FrontendCode.SYNC, FrontendCode.FUNCTION_CALL];
const SERVER_SYNC_TYPES = [BackendCode.READY_FOR_QUERY];
// Extended-protocol messages whose work the server finishes (or, after an error, skips) only at the next Sync.
const CLIENT_OPEN_TYPES = [FrontendCode.PARSE, FrontendCode.BIND, FrontendCode.EXECUTE, FrontendCode.DESCRIBE, FrontendCode.CLOSE, FrontendCode.FLUSH];

/** ParameterStatus bodies are two short C strings; anything bigger is not worth copying. */
const MAX_PARAMETER_STATUS = 4096;

export interface RelayOptions {
  /** The server reported a changed setting (ParameterStatus), e.g. after `SET application_name`. */
  readonly onParameterStatus?: (name: string, value: string) => void;
}

export class Relay {
  private readonly fromClient = new MessageScanner(CLIENT_SYNC_TYPES, undefined, CLIENT_OPEN_TYPES);
  private readonly fromBackend: MessageScanner;
  private bytesFromClient = 0;
  private bytesFromBackend = 0;
  private ended = false;
  private resolveDone!: (r: RelayResult) => void;
  /** Resolves once, when the relay stops for any reason; both sockets are then detached from it. */
  readonly done = new Promise<RelayResult>((resolve) => (this.resolveDone = resolve));

  private readonly onClientData = (chunk: Buffer) => {
    this.bytesFromClient += chunk.length;
    this.fromClient.scan(chunk);
    if (this.fromClient.terminateOffset >= 0) {
      if (this.fromClient.terminateOffset > 0) this.backend.write(chunk.subarray(0, this.fromClient.terminateOffset));
      this.finish('client_terminate');
      return;
    }
    if (this.fromClient.malformed) {
      this.finish('protocol_error', 'client sent a message with an invalid length');
      return;
    }
    if (!this.backend.write(chunk)) {
      this.client.pause();
      this.backend.once('drain', this.resumeClient);
    }
  };

  private readonly onBackendData = (chunk: Buffer) => {
    this.bytesFromBackend += chunk.length;
    this.fromBackend.scan(chunk);
    if (!this.client.write(chunk)) {
      this.backend.pause();
      this.client.once('drain', this.resumeBackend);
    }
  };

  private readonly onClientDataTapped = (chunk: Buffer) => {
    try {
      this.tap!.fromClient(chunk);
    } catch (e) {
      this.finish('protocol_error', `statement audit: ${(e as Error).message}`);
      return;
    }
    this.onClientData(chunk);
  };

  private readonly onBackendDataTapped = (chunk: Buffer) => {
    try {
      this.tap!.fromBackend(chunk);
    } catch (e) {
      this.finish('protocol_error', `statement audit: ${(e as Error).message}`);
      return;
    }
    this.onBackendData(chunk);
  };

  private readonly resumeClient = () => this.client.resume();
  private readonly resumeBackend = () => this.backend.resume();
  private readonly onClientEnd = () => this.finish('client_closed');
  private readonly onClientError = (e: Error) => this.finish('client_error', e.message);
  private readonly onBackendEnd = () => this.finish('backend_closed');
  private readonly onBackendError = (e: Error) => this.finish('backend_error', e.message);

  constructor(
    private readonly client: Socket,
    private readonly backend: Socket,
    private readonly tap?: RelayTap,
    options: RelayOptions = {},
  ) {
    const onParameterStatus = options.onParameterStatus;
    this.fromBackend = new MessageScanner(
      SERVER_SYNC_TYPES,
      onParameterStatus
        ? {
            types: [BackendCode.PARAMETER_STATUS],
            maxBodyLength: MAX_PARAMETER_STATUS,
            onMessage: (_type, body) => {
              const end = body.indexOf(0);
              if (end < 0) return;
              const valueEnd = body.indexOf(0, end + 1);
              onParameterStatus(body.toString('utf8', 0, end), body.toString('utf8', end + 1, valueEnd < 0 ? body.length : valueEnd));
            },
          }
        : undefined,
    );
    // The backend is idle when the relay starts: its last ReadyForQuery (after setup) said so.
    this.fromBackend.lastReadyStatus = READY_STATUS_IDLE;
  }

  /** Starts relaying; `pending` are client bytes that arrived with authentication and belong to the session. */
  start(pending?: Buffer): void {
    // A socket that closed before the hand-over emits no more 'close': end now rather than never.
    if (this.client.destroyed || this.client.readableEnded) return this.finish('client_closed');
    if (this.backend.destroyed || this.backend.readableEnded) return this.finish('backend_closed');
    const fromClient = this.tap ? this.onClientDataTapped : this.onClientData;
    this.client.on('data', fromClient);
    this.backend.on('data', this.tap ? this.onBackendDataTapped : this.onBackendData);
    this.client.on('end', this.onClientEnd);
    this.client.on('close', this.onClientEnd);
    this.client.on('error', this.onClientError);
    this.backend.on('end', this.onBackendEnd);
    this.backend.on('close', this.onBackendEnd);
    this.backend.on('error', this.onBackendError);
    this.client.resume();
    this.backend.resume();
    if (pending && pending.length) fromClient(pending);
  }

  /**
   * The backend is at a message boundary, said ReadyForQuery 'I' last, every client request was answered, and
   * no extended-protocol message waits for a Sync (the server would run it with the reset, or skip the reset).
   */
  get backendIdle(): boolean {
    return (
      this.fromBackend.atMessageBoundary &&
      this.fromClient.atMessageBoundary &&
      this.fromBackend.lastReadyStatus === READY_STATUS_IDLE &&
      this.fromClient.syncCount === this.fromBackend.syncCount &&
      !this.fromClient.openSinceSync
    );
  }

  /** For SHOW SESSIONS: bytes so far and what the session does, from the header scan (no extra parsing). */
  probe(): RelayProbe {
    const busy = !this.fromBackend.atMessageBoundary || !this.fromClient.atMessageBoundary || this.fromClient.syncCount !== this.fromBackend.syncCount || this.fromClient.openSinceSync;
    const status = this.fromBackend.lastReadyStatus;
    const activity = busy ? 'active' : status === ReadyStatus.IN_TRANSACTION ? 'idle in transaction' : status === ReadyStatus.FAILED ? 'idle in transaction (aborted)' : 'idle';
    return { bytesFromClient: this.bytesFromClient, bytesFromBackend: this.bytesFromBackend, activity };
  }

  /** A message may be injected toward the client now without splitting one of the backend's. */
  get clientAtBoundary(): boolean {
    return this.fromBackend.atMessageBoundary;
  }

  stop(): void {
    this.finish('stopped');
  }

  private finish(reason: RelayEndReason, error?: string): void {
    if (this.ended) return;
    this.ended = true;
    this.client.off('data', this.onClientData);
    this.backend.off('data', this.onBackendData);
    this.client.off('data', this.onClientDataTapped);
    this.backend.off('data', this.onBackendDataTapped);
    this.client.off('end', this.onClientEnd);
    this.client.off('close', this.onClientEnd);
    this.client.off('error', this.onClientError);
    this.backend.off('end', this.onBackendEnd);
    this.backend.off('close', this.onBackendEnd);
    this.backend.off('error', this.onBackendError);
    this.backend.off('drain', this.resumeClient);
    this.client.off('drain', this.resumeBackend);
    // Paused until the next owner (pool reset, or the session's goodbye) attaches its reader.
    this.backend.pause();
    this.client.pause();
    this.resolveDone({
      reason,
      backendIdle: reason.startsWith('client') || reason === 'stopped' ? this.backendIdle : false,
      bytesFromClient: this.bytesFromClient,
      bytesFromBackend: this.bytesFromBackend,
      ...(error ? { error } : {}),
    });
  }
}
