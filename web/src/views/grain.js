// One grain, open in the shell: a bar with its title and the app in an
// iframe at a fresh origin made for this opening.
import { getJSON, postJSON } from '../api.js';
import { h } from '../dom.js';

export function grainView(app, id) {
  const title = h('h2', { class: 'grain-bar-title' }, 'Opening…');
  const about = h('span', { class: 'note grain-bar-info' });
  const frameBox = h('div', { class: 'grain-frame-box' });
  const view = h('div', { class: 'grain-view' },
    h('div', { class: 'grain-bar' }, h('a', { href: '/', 'data-link': true }, '← All grains'), title, about), frameBox);
  // What the app says about itself, from the running grain: its title and
  // the permissions the owner holds.
  getJSON(`/api/grains/${id}/view-info`).then((v) => {
    const names = v.permissions.filter((p) => !p.obsolete).map((p) => p.title || p.name);
    about.textContent = [v.app_title, names.length ? `you can: ${names.join(', ')}` : '']
      .filter(Boolean).join(' · ');
  }).catch(() => { about.textContent = ''; });
  // While this view is open the grain stays up, as Sandstorm's shell keeps
  // its sessions alive; the timer ends when the view leaves the page.
  const keepAlive = setInterval(() => {
    if (!view.isConnected) { clearInterval(keepAlive); return; }
    postJSON(`/api/grains/${id}/keepalive`, {}).catch(() => {});
  }, 30000);
  postJSON(`/api/grains/${id}/open`, { path: '/' }).then((r) => {
    title.textContent = r.title;
    document.title = `${r.title} · Granary`;
    frameBox.replaceChildren(h('iframe', { class: 'grain-frame', src: r.url, title: r.title }));
  }).catch((e) => {
    title.textContent = 'This grain cannot be opened';
    frameBox.replaceChildren(h('p', { role: 'alert', class: 'error' }, e.message));
  });
  return view;
}
