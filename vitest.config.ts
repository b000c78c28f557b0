import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // tfjs-wasm and PGlite are heavy; 2-core CI machines do better with few forks.
    pool: 'forks',
    maxWorkers: 2,
    env: { NODE_OPTIONS: '--openssl-legacy-provider' },
  },
});
