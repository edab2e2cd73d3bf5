// The shell is served by the daemon from web/dist; nothing is loaded from a
// third-party origin, so the build inlines nothing remote and keeps hashed
// assets under /assets/ (cached as immutable by the gateway).
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    sourcemap: false,
  },
});
