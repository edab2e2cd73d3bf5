// Issue 7's walk in a real browser: an administrator installs the notes app
// from its .spk, makes two notes, writes in one, leaves it, waits until the
// grain has been stopped for being idle, opens it again and finds the text.
// A second user sees none of it, not even with the grain's own URL; logging
// out ends access. Screenshots of each step go to tests/artifacts/browser/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, startDaemon, launchBrowser, shot } from './lib.mjs';

let daemon, browser;
const ADMIN = { name: 'Ada Admin', email: 'ada@example.com', password: 'correct horse battery' };
const BOB = { name: 'Bob Builder', email: 'bob@example.com', password: 'bob can build it' };
const SPK = ['build-asan', 'build'].map((d) => join(ROOT, d, 'apps', 'notes', 'notes.spk')).find(existsSync);

before(async () => {
  daemon = await startDaemon(['--grain-idle-seconds', '2']);
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

async function logIn(page, who) {
  await page.goto(daemon.base + '/login');
  await page.getByLabel('Email').fill(who.email);
  await page.getByLabel('Password', { exact: true }).fill(who.password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('heading', { name: `Welcome, ${who.name}` }).waitFor();
}

async function grains(page) {
  return page.evaluate(async () => (await (await fetch('/api/grains')).json()).grains);
}

let adminCtx, admin, firstId;

test('the administrator installs the notes app from its package', async () => {
  assert.ok(SPK, 'notes.spk is built');
  adminCtx = await browser.newContext();
  admin = await adminCtx.newPage();
  const link = daemon.log().match(/open this link \(valid 24 hours\): (\S+)/)[1];
  await admin.goto(link.replace('http://granary.localhost:6080', daemon.base));
  await admin.getByLabel('Your name').fill(ADMIN.name);
  await admin.getByLabel('Email').fill(ADMIN.email);
  await admin.getByLabel('Password (at least 8 characters)').fill(ADMIN.password);
  await admin.getByLabel('Password again').fill(ADMIN.password);
  await admin.getByRole('button', { name: 'Create account' }).click();
  await admin.getByRole('heading', { name: 'Welcome, Ada Admin' }).waitFor();
  await admin.getByText('No grains yet').waitFor();
  await admin.getByRole('link', { name: 'Apps' }).click();
  await admin.getByLabel('Package (.spk)').setInputFiles(SPK);
  await admin.getByRole('button', { name: 'Install' }).click();
  await admin.getByText('Notes 0.1.0: installed.').waitFor();
  assert.equal(await admin.locator('progress').evaluate((p) => p.value), 100);
  await admin.getByRole('button', { name: 'New note' }).waitFor();
  await shot(admin, 'g01-app-installed');
});

test('two notes are made; one is written in', async () => {
  await admin.getByRole('button', { name: 'New note' }).click();
  await admin.waitForURL(/\/grain\/[A-Za-z0-9]{22}$/);
  firstId = admin.url().split('/').pop();
  const frame = admin.frameLocator('iframe.grain-frame');
  await frame.getByRole('heading', { name: 'Notes' }).waitFor({ timeout: 20000 });
  const firstFrameUrl = await admin.locator('iframe.grain-frame').getAttribute('src');
  // The bar shows what the app says about itself, read from the grain.
  await admin.locator('.grain-bar-info').filter({ hasText: 'you can: read, write' }).waitFor();
  assert.match(firstFrameUrl, /^http:\/\/ui-[0-9a-f]{32}\.granary\.localhost:\d+\/_granary\/init\?token=/);
  await frame.getByLabel('Your note').fill('Buy flour, water and salt.');
  await frame.getByRole('button', { name: 'Save' }).click();
  await frame.getByText('Saved').waitFor();
  await shot(admin, 'g02-note-written');

  await admin.getByRole('link', { name: 'Apps' }).click();
  await admin.getByRole('button', { name: 'New note' }).click();
  await admin.waitForURL(/\/grain\/[A-Za-z0-9]{22}$/);
  assert.notEqual(admin.url().split('/').pop(), firstId);
  await admin.frameLocator('iframe.grain-frame').getByRole('heading', { name: 'Notes' }).waitFor({ timeout: 20000 });
  await admin.getByRole('link', { name: '← All grains' }).click();
  await admin.locator('li.grain').nth(1).waitFor();
  assert.equal((await grains(admin)).length, 2);
  await shot(admin, 'g03-two-grains');
});

test('a grain stopped while away comes back with its text', async () => {
  // Nothing holds the grain now: it stops after 2 idle seconds.
  let stopped = false;
  for (let i = 0; i < 100 && !stopped; i++) {
    const g = (await grains(admin)).find((x) => x.id === firstId);
    stopped = !g.running;
    if (!stopped) await new Promise((r) => setTimeout(r, 200));
  }
  assert.ok(stopped, 'the grain was stopped for being idle');
  assert.ok(daemon.log().includes(`grain ${firstId}: idle`), daemon.log());
  await admin.reload();
  await admin.locator(`li.grain[data-id="${firstId}"]`).waitFor();
  await shot(admin, 'g04-grain-stopped');
  await admin.locator(`li.grain[data-id="${firstId}"] a.grain-title`).click();
  const frame = admin.frameLocator('iframe.grain-frame');
  await frame.getByLabel('Your note').waitFor({ timeout: 20000 });
  await assert.doesNotReject(async () => {
    for (let i = 0; i < 100; i++) {
      if ((await frame.getByLabel('Your note').inputValue()) === 'Buy flour, water and salt.') return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error('the text did not come back');
  });
  assert.equal(daemon.log().split(`grain ${firstId}: started`).length - 1, 2, 'started twice');
  await shot(admin, 'g05-text-back');
});

test('another user cannot see or open the grain, even with its URL', async () => {
  await admin.getByRole('link', { name: '← All grains' }).click();
  await admin.evaluate(async (b) => {
    const s = await (await fetch('/api/session')).json();
    await fetch('/api/admin/accounts', {
      method: 'POST', headers: { 'Content-Type': 'application/json', 'X-Granary-CSRF': s.csrf },
      body: JSON.stringify(b),
    });
  }, BOB);
  const bobCtx = await browser.newContext();
  const bob = await bobCtx.newPage();
  await logIn(bob, BOB);
  await bob.getByText('No grains yet').waitFor();
  await bob.goto(`${daemon.base}/grain/${firstId}`);
  await bob.getByRole('heading', { name: 'This grain cannot be opened' }).waitFor();
  await bob.getByRole('alert').filter({ hasText: 'no such grain' }).waitFor();
  await shot(bob, 'g06-bob-refused');
  // The admin's own frame URL, already used by the admin's browser, gives Bob
  // nothing either. It is read from a session opened just now: a session
  // left idle for three idle periods (6 s here) is closed, and its address
  // would answer 404 instead, which is a refusal too but not the one tested.
  await admin.goto(`${daemon.base}/grain/${firstId}`);
  await admin.frameLocator('iframe.grain-frame').getByLabel('Your note').waitFor({ timeout: 20000 });
  const liveFrameUrl = await admin.locator('iframe.grain-frame').getAttribute('src');
  const resp = await bob.goto(liveFrameUrl);
  assert.equal(resp.status(), 403);
  const grainOrigin = new URL(liveFrameUrl).origin;
  const resp2 = await bob.goto(grainOrigin + '/api/note');
  assert.equal(resp2.status(), 403);
  await shot(bob, 'g07-bob-grain-origin-refused');
  await bobCtx.close();
});

test('logging out ends access', async () => {
  await admin.getByRole('button', { name: 'Log out' }).click();
  await admin.getByRole('heading', { name: 'Log in' }).waitFor();
  const status = await admin.evaluate(async (id) => (await fetch(`/api/grains/${id}/open`, {
    method: 'POST', headers: { 'Content-Type': 'application/json', 'X-Granary-CSRF': 'x' }, body: '{}',
  })).status, firstId);
  assert.equal(status, 401);
  await admin.goto(`${daemon.base}/grain/${firstId}`);
  await admin.getByRole('heading', { name: 'Log in' }).waitFor();
  await shot(admin, 'g08-logged-out');
  await adminCtx.close();
});
