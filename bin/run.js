#!/usr/bin/env node
process.env.OCLIF_DISABLE_ENGINE_WARNING ??= '1';
import { execute } from '@oclif/core';

await execute({ dir: import.meta.url });
