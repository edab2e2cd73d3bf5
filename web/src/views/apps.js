// Installed apps with their "New ..." actions, and (for administrators) the
// upload of a package, with its progress.
import { getJSON, postJSON, csrfToken } from '../api.js';
import { h } from '../dom.js';

export function appsView(app) {
  const list = h('section', { class: 'card', 'aria-labelledby': 'apps-title' },
    h('h2', { id: 'apps-title' }, 'Apps'), h('p', { role: 'status' }, 'Loading…'));
  const load = async () => {
    const data = await getJSON('/api/apps');
    list.replaceChildren(h('h2', { id: 'apps-title' }, 'Apps'),
      data.apps.length
        ? h('ul', { class: 'apps' }, data.apps.map((a) => h('li', { class: 'app' },
          a.icon ? h('img', { class: 'app-icon', src: a.icon, alt: '', width: 32, height: 32 }) : null,
          h('span', { class: 'app-title' }, a.title), h('span', { class: 'note' }, ` ${a.marketing_version} (version ${a.version})`),
          h('span', { class: 'actions' }, a.actions.map((act) => h('button', {
            type: 'button', onclick: async () => {
              const r = await postJSON('/api/grains', { package_id: a.package_id, action: act.index });
              app.go(`/grain/${r.grain.id}`);
            },
          }, `New ${act.noun}`))))))
        : h('p', {}, 'No apps are installed yet.'));
  };
  load().catch((e) => list.append(h('p', { role: 'alert', class: 'error' }, e.message)));
  return h('div', {}, list, app.account.is_admin ? installForm(load) : null);
}

function installForm(reload) {
  const input = h('input', { type: 'file', id: 'spk', name: 'spk', accept: '.spk' });
  const progress = h('progress', { max: 100, value: 0, hidden: true, 'aria-label': 'Upload progress' });
  const status = h('p', { role: 'status', class: 'note' });
  const button = h('button', { type: 'submit' }, 'Install');
  const form = h('form', { 'aria-label': 'Install an app' }, h('h2', {}, 'Install an app'),
    h('div', { class: 'field' }, h('label', { for: 'spk' }, 'Package (.spk)'), input), progress, button, status);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const file = input.files[0];
    if (!file) { status.textContent = 'Choose a package first.'; return; }
    // XMLHttpRequest, not fetch: it reports upload progress.
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/api/apps');
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    xhr.setRequestHeader('X-Granary-CSRF', csrfToken() || 'anonymous');
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) progress.value = Math.round((100 * e.loaded) / e.total); };
    xhr.onload = () => {
      button.disabled = false;
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch { /* shown below */ }
      if (xhr.status >= 200 && xhr.status < 300) {
        progress.value = 100;
        status.textContent = `${body.title} ${body.marketing_version}: ${body.status}.`;
        reload();
      } else {
        status.textContent = `Not installed: ${body.error || xhr.statusText}`;
      }
    };
    xhr.onerror = () => { button.disabled = false; status.textContent = 'The upload failed.'; };
    button.disabled = true;
    progress.hidden = false;
    progress.value = 0;
    status.textContent = 'Uploading…';
    xhr.send(file);
  });
  return h('section', { class: 'card' }, form);
}
