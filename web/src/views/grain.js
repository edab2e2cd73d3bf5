// One grain, open in the shell: a bar with its title and the app in an
// iframe at a fresh origin made for this opening.
import { postJSON } from '../api.js';
import { h } from '../dom.js';

export function grainView(app, id) {
  const title = h('h2', { class: 'grain-bar-title' }, 'Opening…');
  const frameBox = h('div', { class: 'grain-frame-box' });
  const view = h('div', { class: 'grain-view' },
    h('div', { class: 'grain-bar' }, h('a', { href: '/', 'data-link': true }, '← All grains'), title), frameBox);
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
