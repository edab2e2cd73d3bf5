// A small client for the daemon's JSON API on the shell's own origin. Every
// POST carries the session's CSRF token in X-Granary-CSRF.
let csrf = null;

export function setCsrf(token) {
  csrf = token;
}

export function csrfToken() {
  return csrf;
}

export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.error ? body.error : `the server answered ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

async function call(method, path, body) {
  const headers = { Accept: 'application/json' };
  const init = { method, headers, credentials: 'same-origin' };
  if (method === 'POST') {
    headers['Content-Type'] = 'application/json';
    headers['X-Granary-CSRF'] = csrf || 'anonymous';
    init.body = JSON.stringify(body || {});
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, { error: 'the server cannot be reached' });
  }
  let data = null;
  try {
    data = await res.json();
  } catch {
    throw new ApiError(res.status, { error: `${res.status} ${res.statusText} (not JSON)` });
  }
  if (!res.ok) throw new ApiError(res.status, data);
  if (data && data.csrf) csrf = data.csrf;
  return data;
}

export const getJSON = (path) => call('GET', path);
export const postJSON = (path, body) => call('POST', path, body);
