import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    globalSetup: ['test/helpers/temp-root.ts'],   // scratch directories live in one per-run root, removed at the end
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Two cores: onnxruntime sessions already use both, so run test files two at a time at most.
    maxWorkers: 2,
  },
})
