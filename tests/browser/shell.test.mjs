// The shell in a real browser against a real daemon: first-run setup, login
// with a password, a wrong password, an email link, a TOTP second factor,
// an account made by the admin, logout, and the 404 of an unknown host.
// Screenshots of each step go to tests/artifacts/browser/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { startDaemon, launchBrowser, shot } from './lib.mjs';

let daemon, browser;
const ADMIN = { name: 'Ada Admin', email: 'ada@example.com', password: 'correct horse battery' };

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

// RFC 6238 with SHA-1, independent of Granary's code.
function totp(secretB32, t = Date.now() / 1000) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const ch of secretB32) bits += alphabet.indexOf(ch).toString(2).padStart(5, '0');
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(Math.floor(t / 30)));
  const mac = createHmac('sha1', key).update(msg).digest();
  const off = mac[mac.length - 1] & 15;
  return String((mac.readUInt32BE(off) & 0x7fffffff) % 1000000).padStart(6, '0');
}

// A page that records requests to other origins and script errors.
async function watchedPage(context) {
  const page = await context.newPage();
  page.foreign = [];
  page.errors = [];
  page.on('request', (r) => { if (!r.url().startsWith(daemon.base)) page.foreign.push(r.url()); });
  page.on('pageerror', (e) => page.errors.push(e.message));
  page.on('console', (m) => {
    // A refused login answers 401/429, which the browser logs as a failed load.
    if (m.type() === 'error' && !/status of (401|403|429)/.test(m.text())) page.errors.push(m.text());
  });
  return page;
}

function clean(page) {
  assert.deepEqual(page.foreign, [], 'nothing may load from another origin');
  assert.deepEqual(page.errors, [], 'no script or CSP errors');
}

async function logIn(page, email, password) {
  await page.goto(daemon.base + '/login');
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
}

test('first run: the setup link creates the administrator', async () => {
  const context = await browser.newContext();
  const page = await watchedPage(context);
  await page.goto(daemon.base + '/');
  await page.getByText('has no administrator yet').waitFor();
  await shot(page, '01-no-admin-yet');
  const link = daemon.log().match(/open this link \(valid 24 hours\): (\S+)/)[1];
  await page.goto(link.replace('http://granary.localhost:6080', daemon.base));
  await page.getByLabel('Your name').fill(ADMIN.name);
  await page.getByLabel('Email').fill(ADMIN.email);
  await page.getByLabel('Password (at least 8 characters)').fill(ADMIN.password);
  await page.getByLabel('Password again').fill(ADMIN.password);
  await shot(page, '02-setup-form');
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByRole('heading', { name: 'Welcome, Ada Admin' }).waitFor();
  await page.locator('#status[data-state=ok]').waitFor();
  assert.match(await page.locator('#status').textContent(), /^Granary 0\.\d+\.\d+ is running/);
  assert.equal(new URL(page.url()).hash, '', 'the token does not stay in the address bar');
  await shot(page, '03-home-after-setup');
  clean(page);
  await context.close();
});

test('login: a wrong password is refused, the right one works, logout ends it', async () => {
  const context = await browser.newContext();
  const page = await watchedPage(context);
  await logIn(page, ADMIN.email, 'not the password');
  await page.getByRole('alert').filter({ hasText: 'wrong email or password' }).waitFor();
  assert.equal(await page.getByLabel('Authenticator code').isVisible(), false,
    'no second-factor field for an account without one');
  await shot(page, '04-wrong-password');
  await page.getByLabel('Password', { exact: true }).fill(ADMIN.password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('heading', { name: 'Welcome, Ada Admin' }).waitFor();
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.getByRole('heading', { name: 'Log in' }).waitFor();
  await page.goto(daemon.base + '/account');
  await page.getByRole('heading', { name: 'Log in' }).waitFor(); // sent back to login
  await shot(page, '05-logged-out');
  clean(page);
  await context.close();
});

test('login by email link', async () => {
  const context = await browser.newContext();
  const page = await watchedPage(context);
  await page.goto(daemon.base + '/login');
  await page.getByLabel('Email').fill(ADMIN.email);
  await page.getByRole('button', { name: 'Email me a login link instead' }).click();
  await page.getByText('a login link is on its way').waitFor();
  let link;
  for (let i = 0; i < 50 && !link; i++) {
    link = [...daemon.log().matchAll(/login link for ada@example.com \(valid 15 minutes\): (\S+)/g)].pop()?.[1];
    if (!link) await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(link, 'the link is printed to the log');
  await page.goto(link.replace('http://granary.localhost:6080', daemon.base));
  await page.getByRole('heading', { name: 'Welcome, Ada Admin' }).waitFor();
  await shot(page, '06-email-link-login');
  clean(page);
  await context.close();
});

test('a TOTP second factor is asked for once turned on', async () => {
  const context = await browser.newContext();
  const page = await watchedPage(context);
  await logIn(page, ADMIN.email, ADMIN.password);
  await page.getByRole('heading', { name: 'Welcome, Ada Admin' }).waitFor();
  await page.getByRole('link', { name: 'Ada Admin' }).click();
  await page.getByRole('button', { name: 'Set up a second factor' }).click();
  const secret = (await page.locator('#totp-secret').textContent()).trim();
  await page.getByLabel('Code from the app').fill(totp(secret));
  await page.getByRole('button', { name: 'Turn on' }).click();
  await page.getByRole('heading', { name: 'Second factor: on' }).waitFor();
  await shot(page, '07-totp-on');
  await page.getByRole('button', { name: 'Log out' }).click();
  await logIn(page, ADMIN.email, ADMIN.password);
  await page.getByLabel('Authenticator code').waitFor();
  await shot(page, '08-totp-asked');
  await page.getByLabel('Authenticator code').fill(totp(secret));
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('heading', { name: 'Welcome, Ada Admin' }).waitFor();
  // Turn it off again for the tests after this one.
  await page.getByRole('link', { name: 'Ada Admin' }).click();
  await page.getByLabel('Current authenticator code').fill(totp(secret));
  await page.getByRole('button', { name: 'Turn off' }).click();
  await page.getByRole('heading', { name: 'Second factor: off' }).waitFor();
  clean(page);
  await context.close();
});

test('the admin makes an account; its user is not an admin', async () => {
  const adminCtx = await browser.newContext();
  const page = await watchedPage(adminCtx);
  await logIn(page, ADMIN.email, ADMIN.password);
  await page.getByRole('heading', { name: 'Welcome, Ada Admin' }).waitFor();
  await page.getByRole('link', { name: 'Ada Admin' }).click();
  const f = page.getByRole('form', { name: 'Make an account for someone' });
  await f.getByLabel('Name').fill('Bob Builder');
  await f.getByLabel('Email', { exact: true }).fill('bob@example.com');
  await f.getByLabel('Password (or leave empty for email-link login)').fill('bob can build it');
  await f.getByRole('button', { name: 'Create account' }).click();
  await page.getByText('Account created for bob@example.com.').waitFor();
  await shot(page, '09-admin-made-account');
  clean(page);

  const bobCtx = await browser.newContext();
  const bob = await watchedPage(bobCtx);
  await logIn(bob, 'bob@example.com', 'bob can build it');
  await bob.getByRole('heading', { name: 'Welcome, Bob Builder' }).waitFor();
  await bob.getByRole('link', { name: 'Bob Builder' }).click();
  await bob.getByText('user', { exact: true }).waitFor();
  assert.equal(await bob.getByRole('form', { name: 'Make an account for someone' }).count(), 0);
  await shot(bob, '10-bob-account');
  clean(bob);
  await bobCtx.close();
  await adminCtx.close();
});

test('an unknown host gets a clear 404 page', async () => {
  const page = await browser.newPage();
  const resp = await page.goto(`http://elsewhere.localhost:${daemon.port}/`);
  assert.equal(resp.status(), 404);
  assert.match(await page.locator('body').textContent(), /nothing at the host/);
  await shot(page, '11-unknown-host-404');
  await page.close();
});
