// The shell's entry point: finds out who is logged in, then shows the page
// for the current path. Links marked data-link navigate without a reload.
import './style.css';
import { getJSON, postJSON, setCsrf } from './api.js';
import { h } from './dom.js';
import { loginView, emailLinkView, setupView } from './views/auth.js';
import { accountView } from './views/account.js';
import { appsView } from './views/apps.js';
import { grainView } from './views/grain.js';
import { grainsView } from './views/grains.js';

const root = document.getElementById('app');
const nav = document.getElementById('nav');

const app = {
  account: null,
  setupNeeded: false,
  loggedIn(r) {
    this.account = r.account;
    setCsrf(r.csrf);
    go('/');
  },
  go: (path) => go(path),
};

function homeView() {
  const a = app.account;
  return h('div', {},
    h('section', { class: 'card' }, h('h2', {}, `Welcome, ${a.name}`),
      h('p', { id: 'status', 'data-state': 'loading' }, 'Checking the server…')),
    grainsView(app));
}

function noAdminView() {
  return h('section', { class: 'card' }, h('h2', {}, 'Welcome to Granary'),
    h('p', {}, 'This server has no administrator yet. Open the setup link that `granary run` printed, or make a new one with `granary admin setup-link`.'));
}

const routes = {
  '/': () => (app.account ? homeView() : app.setupNeeded ? noAdminView() : null),
  '/login': () => (app.account ? null : loginView(app)),
  '/login/email': () => emailLinkView(app),
  '/setup': () => setupView(app),
  '/account': () => (app.account ? accountView(app) : null),
  '/apps': () => (app.account ? appsView(app) : null),
};

function routeFor(path) {
  const m = path.match(/^\/grain\/([A-Za-z0-9]{22})$/);
  if (m) return () => (app.account ? grainView(app, m[1]) : null);
  return routes[path];
}

function renderNav() {
  const a = app.account;
  nav.replaceChildren(...(a
    ? [h('a', { href: '/', 'data-link': true }, 'Grains'),
      h('a', { href: '/apps', 'data-link': true }, 'Apps'),
      h('a', { href: '/account', 'data-link': true }, a.name),
      h('button', { type: 'button', id: 'logout', class: 'link', onclick: logout }, 'Log out')]
    : [h('a', { href: '/login', 'data-link': true }, 'Log in')]));
}

async function logout() {
  await postJSON('/api/logout', {});
  app.account = null;
  setCsrf(null);
  go('/login');
}

function render() {
  const view = routeFor(location.pathname) || (() => h('section', { class: 'card' }, h('h2', {}, 'Not found'),
    h('p', {}, 'There is no page here. '), h('a', { href: '/', 'data-link': true }, 'Go home')));
  let el = view();
  if (el === null) {
    // Not allowed here in this state: logged-out users go to login, others home.
    const target = app.account ? '/' : app.setupNeeded ? '/' : '/login';
    if (target !== location.pathname) return go(target, true);
    el = noAdminView();
  }
  renderNav();
  root.replaceChildren(el);
  const heading = el.querySelector('h2');
  if (heading) document.title = `${heading.textContent} · Granary`;
  if (location.pathname === '/' && app.account) showHealth();
}

function go(path, replace = false) {
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  render();
}

async function showHealth() {
  const status = document.getElementById('status');
  try {
    const hl = await getJSON('/api/health');
    status.textContent = `Granary ${hl.version} is running (store schema ${hl.store.schema_version}).`;
    status.dataset.state = hl.status;
  } catch (e) {
    status.textContent = `The server did not answer: ${e.message}`;
    status.dataset.state = 'error';
  }
}

document.addEventListener('click', (ev) => {
  const a = ev.target.closest('a[data-link]');
  if (a && !ev.metaKey && !ev.ctrlKey) {
    ev.preventDefault();
    go(a.getAttribute('href'));
  }
});
window.addEventListener('popstate', render);

async function start() {
  try {
    const s = await getJSON('/api/session');
    app.account = s.account;
    app.setupNeeded = !!s.setup_needed;
    setCsrf(s.csrf || null);
  } catch (e) {
    root.replaceChildren(h('p', { role: 'alert', class: 'error' }, `The server did not answer: ${e.message}`));
    return;
  }
  render();
}

start();
