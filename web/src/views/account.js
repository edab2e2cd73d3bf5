// The account page: password, second factor, and (for administrators) making
// accounts for other people.
import { postJSON } from '../api.js';
import { h, field, form } from '../dom.js';

export function accountView(app) {
  const a = app.account;
  const done = h('p', { role: 'status', class: 'note' });
  const password = form({
    title: 'Change password',
    submit: 'Change password',
    fields: [
      field('Current password', { name: 'current', type: 'password', autocomplete: 'current-password' }),
      field('New password', { name: 'new', type: 'password', autocomplete: 'new-password' }),
    ],
    action: async (v, el) => {
      await postJSON('/api/account/password', v);
      el.reset();
      done.textContent = 'Password changed.';
    },
  });
  return h('div', {},
    h('section', { class: 'card' }, h('h2', {}, 'Account'),
      h('dl', {}, h('dt', {}, 'Name'), h('dd', {}, a.name), h('dt', {}, 'Email'), h('dd', {}, a.email),
        h('dt', {}, 'Role'), h('dd', {}, a.is_admin ? 'administrator' : 'user'))),
    h('section', { class: 'card' }, password, done),
    h('section', { class: 'card' }, totpPanel(app)),
    a.is_admin ? h('section', { class: 'card' }, newAccountForm()) : null);
}

function totpPanel(app) {
  const box = h('div', { id: 'totp' });
  const render = () => {
    if (app.account.totp) {
      box.replaceChildren(form({
        title: 'Second factor: on',
        submit: 'Turn off',
        fields: [field('Current authenticator code', { name: 'code', inputmode: 'numeric', autocomplete: 'one-time-code' })],
        action: async (v) => {
          await postJSON('/api/account/totp/disable', v);
          app.account.totp = false;
          render();
        },
      }));
    } else {
      box.replaceChildren(h('h2', {}, 'Second factor: off'),
        h('p', {}, 'Use an authenticator app (TOTP) as a second step when you log in.'),
        h('button', {
          type: 'button', id: 'totp-begin', onclick: async () => {
            const t = await postJSON('/api/account/totp/begin', {});
            box.replaceChildren(form({
              title: 'Set up your authenticator app',
              submit: 'Turn on',
              fields: [
                h('p', {}, 'Add this key to your authenticator app, then enter the code it shows.'),
                h('p', {}, h('code', { id: 'totp-secret' }, t.secret)),
                h('p', { class: 'small' }, h('a', { href: t.uri }, 'Open in an authenticator app')),
                field('Code from the app', { name: 'code', inputmode: 'numeric', autocomplete: 'one-time-code' }),
              ],
              action: async (v) => {
                await postJSON('/api/account/totp/enable', { secret: t.secret, code: v.code });
                app.account.totp = true;
                render();
              },
            }));
          },
        }, 'Set up a second factor'));
    }
  };
  render();
  return box;
}

function newAccountForm() {
  const done = h('p', { role: 'status', class: 'note' });
  const f = form({
    title: 'Make an account for someone',
    submit: 'Create account',
    fields: [
      field('Name', { name: 'name', required: true }),
      field('Email', { name: 'email', type: 'email', required: true }),
      field('Password (or leave empty for email-link login)', { name: 'password', type: 'password', autocomplete: 'new-password' }),
    ],
    action: async (v, el) => {
      const body = { name: v.name, email: v.email };
      if (v.password) body.password = v.password;
      const r = await postJSON('/api/admin/accounts', body);
      el.reset();
      done.textContent = `Account created for ${r.account.email}.`;
    },
  });
  return h('div', {}, f, done);
}
