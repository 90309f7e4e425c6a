import { defineConfig } from 'tsup'

// ESM + .d.ts for npm (Node, Bun). Deno users get the TypeScript sources from JSR instead.
export default defineConfig({
  entry: { mod: 'mod.ts' },
  format: ['esm'],
  dts: true,
  clean: true,
  target: 'es2022',
  platform: 'neutral',
  sourcemap: true,
  removeNodeProtocol: false,
  external: ['postgres', '@aws-sdk/rds-signer', '@aws-sdk/client-secrets-manager', /^node:/],
})
