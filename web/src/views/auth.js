// Login (password or email link, with the second factor when the account has
// one) and the first-run administrator setup.
import { postJSON, ApiError } from '../api.js';
import { h, field, form, fragmentParam } from '../dom.js';

export function loginView(app) {
  let needTotp = false;
  const totp = field('Authenticator code', { name: 'totp', inputmode: 'numeric', autocomplete: 'one-time-code', pattern: '[0-9]{6}' });
  totp.hidden = true;
  const note = h('p', { class: 'note', role: 'status' });
  const f = form({
    title: 'Log in',
    submit: 'Log in',
    fields: [
      field('Email', { name: 'email', type: 'email', autocomplete: 'username', required: true }),
      field('Password', { name: 'password', type: 'password', autocomplete: 'current-password', required: true }),
      totp,
    ],
    action: async (v) => {
      const body = { email: v.email, password: v.password };
      if (needTotp) body.totp = v.totp;
      try {
        const r = await postJSON('/api/login', body);
        app.loggedIn(r);
      } catch (e) {
        if (e instanceof ApiError && e.body.totp_required) {
          needTotp = true;
          totp.hidden = false;
          totp.querySelector('input').focus();
        }
        throw e;
      }
    },
    extra: h('p', {}, h('button', {
      type: 'button', class: 'link', onclick: async () => {
        const email = f.querySelector('[name=email]').value;
        try {
          await postJSON('/api/login/email', { email });
          note.textContent = `If ${email} has an account, a login link is on its way (valid 15 minutes).`;
        } catch (e) {
          f.showError(e.message);
        }
      },
    }, 'Email me a login link instead'), note),
  });
  return h('section', { class: 'card' }, f);
}

export function emailLinkView(app) {
  const token = fragmentParam('token');
  const status = h('p', { role: 'status' }, 'Logging you in…');
  const box = h('section', { class: 'card' }, h('h2', {}, 'Logging in'), status);
  const redeem = async (totp) => {
    const body = { token };
    if (totp) body.totp = totp;
    const r = await postJSON('/api/login/email/redeem', body);
    app.loggedIn(r);
  };
  redeem().catch((e) => {
    if (e instanceof ApiError && e.body.totp_required) {
      box.replaceChildren(form({
        title: 'Second factor',
        submit: 'Continue',
        fields: [field('Authenticator code', { name: 'totp', inputmode: 'numeric', autocomplete: 'one-time-code' })],
        action: (v) => redeem(v.totp),
      }));
    } else {
      status.textContent = `${e.message}.`;
      status.setAttribute('role', 'alert');
      status.append(' ', h('a', { href: '/login', 'data-link': true }, 'Back to login'));
    }
  });
  return box;
}

export function setupView(app) {
  const token = fragmentParam('token');
  if (!token) {
    return h('section', { class: 'card' }, h('h2', {}, 'Set up Granary'),
      h('p', {}, 'Open the setup link that `granary run` printed (or make one with `granary admin setup-link`).'));
  }
  return h('section', { class: 'card' }, form({
    title: 'Create the administrator account',
    submit: 'Create account',
    fields: [
      field('Your name', { name: 'name', autocomplete: 'name', required: true }),
      field('Email', { name: 'email', type: 'email', autocomplete: 'username', required: true }),
      field('Password (at least 8 characters)', { name: 'password', type: 'password', autocomplete: 'new-password', required: true }),
      field('Password again', { name: 'again', type: 'password', autocomplete: 'new-password', required: true }),
    ],
    action: async (v) => {
      if (v.password !== v.again) throw new Error('the two passwords differ');
      const r = await postJSON('/api/setup', { token, name: v.name, email: v.email, password: v.password });
      history.replaceState(null, '', '/');
      app.loggedIn(r);
    },
  }));
}
