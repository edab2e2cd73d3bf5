// The grain list: every grain of the user in one place, with its app, size of
// use (last used), and what can be done to it; the trash below.
import { getJSON, postJSON } from '../api.js';
import { h } from '../dom.js';

function size(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

function when(t) {
  if (!t) return '';
  const d = new Date(t * 1000);
  return d.toLocaleString();
}

export function grainsView(app) {
  const box = h('section', { class: 'card', 'aria-labelledby': 'grains-title' },
    h('h2', { id: 'grains-title' }, 'Your grains'), h('p', { role: 'status' }, 'Loading…'));
  const trash = h('section', { class: 'card', 'aria-labelledby': 'trash-title', hidden: true });
  const load = async () => {
    let data;
    try {
      data = await getJSON('/api/grains');
    } catch (e) {
      box.replaceChildren(h('h2', { id: 'grains-title' }, 'Your grains'), h('p', { role: 'alert', class: 'error' }, e.message));
      return;
    }
    const live = data.grains.filter((g) => !g.trashed);
    const gone = data.grains.filter((g) => g.trashed);
    box.replaceChildren(h('h2', { id: 'grains-title' }, 'Your grains'),
      live.length
        ? h('ul', { class: 'grains' }, live.map((g) => grainRow(app, g, load)))
        : h('p', {}, 'No grains yet. ', h('a', { href: '/apps', 'data-link': true }, 'Make one from an app'), '.'));
    trash.hidden = gone.length === 0;
    trash.replaceChildren(h('h2', { id: 'trash-title' }, 'Trash'),
      h('ul', { class: 'grains' }, gone.map((g) => h('li', { class: 'grain', dataset: { id: g.id } },
        h('span', { class: 'grain-title' }, g.title), h('span', { class: 'note' }, ` ${g.app_title}`),
        h('span', { class: 'actions' },
          h('button', { type: 'button', onclick: async () => { await postJSON(`/api/grains/${g.id}/restore`, {}); load(); } }, 'Restore'),
          h('button', {
            type: 'button', class: 'danger', onclick: async () => {
              if (!confirm(`Delete "${g.title}" for good? Its data cannot be recovered.`)) return;
              await postJSON(`/api/grains/${g.id}/delete`, {});
              load();
            },
          }, 'Delete for good'))))));
  };
  load();
  return h('div', {}, box, trash);
}

function grainRow(app, g, reload) {
  const rename = async () => {
    const title = prompt('New title', g.title);
    if (!title || title === g.title) return;
    await postJSON(`/api/grains/${g.id}/rename`, { title });
    reload();
  };
  return h('li', { class: 'grain', dataset: { id: g.id } },
    h('a', { href: `/grain/${g.id}`, 'data-link': true, class: 'grain-title' }, g.title),
    h('span', { class: 'note' }, ` ${g.app_title} · ${size(g.size_bytes)} · last used ${when(g.last_used_at)}${g.running ? ' · running' : ''}`),
    g.kept_awake ? h('span', { class: 'note', role: 'note' },
      ` · kept awake by the app: ${g.kept_awake.join('; ')} `,
      h('button', { type: 'button', onclick: async () => { await postJSON(`/api/grains/${g.id}/let-sleep`, {}); reload(); } }, 'Let it sleep')) : null,
    g.crashed ? h('span', { class: 'error', role: 'note' },
      ` · stopped unexpectedly at ${when(g.crashed.at)} (status ${g.crashed.status}); it starts again when opened`) : null,
    h('span', { class: 'actions' },
      h('button', { type: 'button', onclick: rename }, 'Rename'),
      h('a', { href: `/api/grains/${g.id}/log`, download: 'grain.log' }, 'Log'),
      h('button', { type: 'button', onclick: async () => { await postJSON(`/api/grains/${g.id}/trash`, {}); reload(); } }, 'Move to trash')));
}
