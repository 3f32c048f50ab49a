import { readFileSync } from 'node:fs';
import { Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { ExitCode } from '../../cli/exit-codes.js';
import { loadProxyConfig } from '../../config/proxy-config.js';
import { describePolicy, explainPolicy, type PolicyInput } from '../../proxy/policy-explain.js';

/** Stands in for ${VAR}s the config uses that are not set here: policy test reads no password or secret. */
const PLACEHOLDER = 'gprxy-policy-test-placeholder-value-0123456789';

export default class PolicyTest extends BaseCommand {
  static override summary = 'Explain what the proxy decides for a token: provider, rule, account and identity, or the precise refusal';
  static override description = `Runs the proxy's own checks on a token (or the claims of one) against a proxy config, without contacting PostgreSQL:
which provider verifies it (or why none does), which CI rule or role_mapping entry matches and why (each rule's verdict),
the resulting account and identity, and when a session it opens would end; for a refusal, the precise reason (the same
explanation the proxy writes to its audit log) and the SQLSTATE a client would get.
With --claims (a JSON file of claims) the signature, algorithm and key are not checked, and the report says so.
The token is read from --token-file or stdin, never from the command line. Environment variables the config uses that
are not set are replaced by placeholders (policy test needs no password or secret).
Exit code: 0 admitted, 1 refused, 2 usage error.`;
  static override examples = [
    'gprxy policy test --config gprxy.yaml --claims job-claims.json',
    'gprxy token | gprxy policy test --config gprxy.yaml',
    'gprxy policy test --config gprxy.yaml --token-file ./token.jwt --json',
  ];
  static override flags = {
    config: Flags.string({ char: 'c', description: 'proxy config file (YAML or JSON)', required: true, env: 'GPRXY_CONFIG' }),
    'token-file': Flags.string({ description: 'a file holding the token (a JWT)', exclusive: ['claims'] }),
    claims: Flags.string({ description: 'a JSON file of claims (signature not checked)', exclusive: ['token-file'] }),
    json: Flags.boolean({ description: 'print the report as JSON', default: false }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(PolicyTest);
    const unset = new Set<string>();
    const env = new Proxy(process.env, {
      get: (target, name) => {
        const value = target[name as string];
        if (value !== undefined || typeof name !== 'string') return value;
        unset.add(name);
        return PLACEHOLDER;
      },
    });
    const config = loadProxyConfig(flags.config, env);
    const input = await this.input(flags['token-file'], flags.claims);
    const report = await explainPolicy(config, input);
    if (flags.json) process.stdout.write(`${JSON.stringify({ ...report, unset_variables: [...unset] }, null, 2)}\n`);
    else {
      if (unset.size) this.log(`note: not set here, placeholders used: ${[...unset].join(', ')}`);
      for (const line of describePolicy(report)) this.log(line);
    }
    if (!report.admitted) this.exit(ExitCode.ERROR);
  }

  private async input(tokenFile: string | undefined, claimsFile: string | undefined): Promise<PolicyInput> {
    if (claimsFile) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(readFileSync(claimsFile, 'utf8'));
      } catch (e) {
        this.usageError(`--claims ${claimsFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}; give a JSON object of claims`);
      }
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) this.usageError(`--claims ${claimsFile} is not a JSON object of claims`);
      return { claims: parsed as Record<string, unknown> };
    }
    if (tokenFile) {
      try {
        return { token: readFileSync(tokenFile, 'utf8').trim() };
      } catch (e) {
        this.usageError(`--token-file ${tokenFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
    }
    if (process.stdin.isTTY) this.usageError('give the token on stdin (e.g. gprxy token | gprxy policy test ...), or --token-file FILE, or --claims FILE');
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    const token = Buffer.concat(chunks).toString('utf8').trim();
    if (!token) this.usageError('stdin was empty: give the token on stdin, or --token-file FILE, or --claims FILE');
    return { token };
  }
}
