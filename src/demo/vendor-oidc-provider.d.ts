// oidc-provider ships no type declarations (and @types/oidc-provider lags v9). These cover only the
// surface src/demo/oidc-provider.ts uses; everything else stays `unknown`.
declare module 'oidc-provider' {
  import type { IncomingMessage, ServerResponse } from 'node:http';

  export interface OidcClient {
    readonly clientId: string;
    readonly clientName?: string;
  }

  export interface OidcContextState {
    readonly route?: string;
    readonly params?: Record<string, unknown>;
    readonly body?: Record<string, unknown>;
    readonly client?: OidcClient;
    readonly entities?: Record<string, unknown>;
  }

  /** The Koa context with oidc-provider's `oidc` property. */
  export interface KoaContextWithOIDC {
    readonly oidc: OidcContextState;
    readonly path: string;
    readonly method: string;
    readonly query: Record<string, string | string[] | undefined>;
    querystring: string;
    type: string;
    body: unknown;
    status: number;
    get(header: string): string;
    set(header: string, value: string): void;
  }

  export type Middleware = (ctx: KoaContextWithOIDC, next: () => Promise<void>) => Promise<void>;

  export interface InteractionPrompt {
    readonly name: string;
    readonly reasons: string[];
    readonly details: {
      missingOIDCScope?: string[];
      missingOIDCClaims?: string[];
      missingResourceScopes?: Record<string, string[]>;
      [key: string]: unknown;
    };
  }

  export interface Interaction {
    readonly uid: string;
    readonly prompt: InteractionPrompt;
    readonly params: Record<string, unknown> & { client_id?: string; scope?: string };
    readonly session?: { accountId?: string; uid?: string };
    readonly grantId?: string;
    readonly returnTo: string;
  }

  export interface GrantInstance {
    addOIDCScope(scope: string): void;
    addOIDCClaims(claims: string[]): void;
    addResourceScope(resource: string, scope: string): void;
    save(): Promise<string>;
  }

  export interface GrantStatic {
    new (properties: { accountId: string; clientId: string }): GrantInstance;
    find(id: string): Promise<GrantInstance | undefined>;
  }

  export interface ClientStatic {
    find(id: string): Promise<OidcClient | undefined>;
  }

  /** What `formats.customizers.jwt` receives: the model being issued. */
  export interface IssuedToken {
    readonly kind: string;
    readonly accountId?: string;
    readonly clientId?: string;
    readonly client?: OidcClient;
    readonly scope?: string;
  }

  export class Provider {
    constructor(issuer: string, configuration: Record<string, unknown>);
    readonly issuer: string;
    readonly Grant: GrantStatic;
    readonly Client: ClientStatic;
    callback(): (req: IncomingMessage, res: ServerResponse) => void;
    use(middleware: Middleware): this;
    on(event: string, listener: (...args: unknown[]) => void): this;
    interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<Interaction>;
    interactionFinished(
      req: IncomingMessage,
      res: ServerResponse,
      result: Record<string, unknown>,
      options?: { mergeWithLastSubmission?: boolean },
    ): Promise<void>;
  }

  export const errors: {
    InvalidTarget: new (description?: string) => Error;
    [name: string]: unknown;
  };

  export default Provider;
}
