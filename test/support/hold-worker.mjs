/**
 * Loaded into `gprxy serve` with NODE_OPTIONS=--import (every process of it: the primary and its workers):
 * the worker whose slot is TEST_HOLD_WORKER_SLOT does not start gprxy until the file TEST_HOLD_WORKER_FILE
 * exists. Tests use it to see what a replica says and does while one of its workers is still starting
 * (a slow start, as under load), deterministically: the test creates the file when it has seen what it waits for.
 */
import { existsSync, watch } from 'node:fs';
import { dirname } from 'node:path';

const slot = process.env.TEST_HOLD_WORKER_SLOT;
const file = process.env.TEST_HOLD_WORKER_FILE;
if (slot !== undefined && file && process.env.GPRXY_WORKER_SLOT === slot) {
  await new Promise((resolve) => {
    const watcher = watch(dirname(file), () => {
      if (existsSync(file)) {
        watcher.close();
        resolve();
      }
    });
    // Created before the watch began.
    if (existsSync(file)) {
      watcher.close();
      resolve();
    }
  });
}
