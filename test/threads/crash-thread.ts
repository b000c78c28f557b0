// A training thread that dies the way a real one can, for train-thread.test.ts: the mode comes in
// the environment it is handed (TEST_CRASH): an uncaught error, an exit, or a heap that outgrows
// the thread's resourceLimits.
import { workerData } from 'node:worker_threads';
import type { TrainThreadData } from '../../src/threads/train-messages.js';

const { env } = (workerData as { data: TrainThreadData }).data;
const mode = env.TEST_CRASH;
if (mode === 'error') throw new Error('a native abort, as the thread sees it');
if (mode === 'exit') process.exit(7);
if (mode === 'oom') {
  const hoard: number[][] = [];
  for (;;) hoard.push(Array.from({ length: 100_000 }, (_, i) => i + hoard.length));
}
