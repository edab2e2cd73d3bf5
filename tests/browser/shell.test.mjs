// The shell in a real browser: it loads from the daemon with no third-party
// resource, reports the server's health, and unknown hosts get Granary's 404.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startDaemon, launchBrowser, shot } from './lib.mjs';

let daemon, browser;

before(async () => {
  daemon = await startDaemon();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  if (daemon) {
    const code = await daemon.stop();
    assert.equal(code, 0, daemon.log());
    assert.ok(!/Sanitizer|runtime error/.test(daemon.log()), daemon.log());
  }
});

test('the shell loads and shows the server health', async () => {
  const page = await browser.newPage();
  const foreign = [];
  page.on('request', (r) => {
    if (!r.url().startsWith(daemon.base)) foreign.push(r.url());
  });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  const resp = await page.goto(daemon.base + '/');
  assert.equal(resp.status(), 200);
  assert.equal(await page.title(), 'Granary');
  const status = page.locator('#status');
  await status.filter({ hasText: 'is running' }).waitFor({ timeout: 10000 });
  assert.match(await status.textContent(), /^Granary 0\.\d+\.\d+ is running \(store schema \d+\)\.$/);
  assert.equal(await status.getAttribute('data-state'), 'ok');
  await shot(page, 'shell-health');
  assert.deepEqual(foreign, [], 'the shell must not load anything from another origin');
  assert.deepEqual(errors, [], 'no script or CSP errors');
  await page.close();
});

test('an unknown host gets a clear 404 page', async () => {
  const page = await browser.newPage();
  const resp = await page.goto(`http://elsewhere.localhost:${daemon.port}/`);
  assert.equal(resp.status(), 404);
  assert.match(await page.locator('body').textContent(), /nothing at the host/);
  await shot(page, 'unknown-host-404');
  await page.close();
});
