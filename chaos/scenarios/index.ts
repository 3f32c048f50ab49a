/** Every scenario of `npm run chaos`, in the order a full run takes them. */
import type { Scenario } from '../lib/scenario.js';
import { fuzzCodec } from './fuzz-codec.js';
import { pgRestart } from './pg-restart.js';
import { soak } from './soak.js';
import { fuzzSessions } from './fuzz-sessions.js';
import { netFaults } from './net-faults.js';
import { idpOutage } from './idp-outage.js';
import { slowClients } from './slow-clients.js';

export const SCENARIOS: readonly Scenario[] = [fuzzCodec, fuzzSessions, pgRestart, netFaults, idpOutage, slowClients, soak];
