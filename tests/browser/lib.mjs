// Helpers for the browser tests: start a real granary daemon on a free port
// and a headless Debian chromium driven by playwright-core.
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const { chromium } = require(join(ROOT, 'web', 'node_modules', 'playwright-core'));

export const ARTIFACTS = join(ROOT, 'tests', 'artifacts', 'browser');
mkdirSync(ARTIFACTS, { recursive: true });

function granaryBin() {
  const dir = process.env.GRANARY_ASAN_DIR || join(ROOT, 'build-asan');
  return join(dir, 'src', 'granary', 'granary');
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

// Starts `granary run` with the shell at http://granary.localhost:PORT.
export async function startDaemon(extraArgs = []) {
  const port = await freePort();
  const data = mkdtempSync(join(tmpdir(), 'granary-browser-'));
  const base = `http://granary.localhost:${port}`;
  const proc = spawn(granaryBin(), ['run', '--data', join(data, 'var'), '--listen', `127.0.0.1:${port}`,
    '--base-url', base, '--wildcard-host', `*.granary.localhost:${port}`,
    '--web-dir', join(ROOT, 'web', 'dist'), ...extraArgs], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  proc.stdout.on('data', (d) => { log += d; });
  proc.stderr.on('data', (d) => { log += d; });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`granary did not start:\n${log}`)), 20000);
    const check = () => {
      if (log.includes('listening on')) { clearTimeout(timer); resolve(); }
    };
    proc.stderr.on('data', check);
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`granary exited ${code}:\n${log}`)); });
  });
  return {
    port, base, proc,
    log: () => log,
    async stop() {
      const exited = new Promise((resolve) => proc.on('exit', (code) => resolve(code)));
      proc.kill('SIGTERM');
      const code = await exited;
      rmSync(data, { recursive: true, force: true });
      return code;
    },
  };
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

export function shot(page, name) {
  return page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}
