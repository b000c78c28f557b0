// A compute thread for compute-runtime.test.ts: starts the runtime from the env it is handed,
// answers with what it loaded and the backbone's features for the images it is sent, then closes.
import { parentPort, workerData } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import { backboneFeatures } from '../../src/model/index.js';
import { startComputeRuntime } from '../../src/threads/compute-runtime.js';

const { env, images, size } = (workerData as { data: { env: Record<string, string>; images: Float32Array; size: number } }).data;
const rt = await startComputeRuntime(env, { bindings: { thread: 'probe' } });
const n = images.length / (size * size * 3);
const features = tf.tidy(() =>
  backboneFeatures(rt.backbone, tf.tensor4d(images, [n, size, size, 3])).dataSync(),
);
parentPort!.postMessage({ identity: rt.backbone.identity, backend: rt.backend, engine: rt.engine, features, tensors: tf.memory().numTensors });
await rt.close();
