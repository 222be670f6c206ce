import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Two cores: onnxruntime sessions already use both, so run test files two at a time at most.
    maxWorkers: 2,
  },
})
