// The first module of every compute thread (spawn.ts). Node 20 runs a worker's modules without the
// parent's `--import tsx` hooks, so a TypeScript entry cannot be started directly: this plain
// module registers tsx in the thread, then imports the entry it was handed. Node 24 (the images')
// does run the parent's hooks in workers; registering again there is redundant and harmless (the
// thread tests pass on both: `npm run test:node -- 24 test/threads`).
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
await import(workerData.entry);
