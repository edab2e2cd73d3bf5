// Building the page from data without innerHTML, so nothing a user typed can
// become markup.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v === null || v === undefined) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// A labelled input; the label's text doubles as the accessible name.
export function field(label, attrs) {
  const id = `f-${attrs.name}`;
  return h('div', { class: 'field' }, h('label', { for: id }, label), h('input', { id, ...attrs }));
}

// A form whose submit runs `action(values)`; errors show in an alert region
// and the submit button is disabled while it runs.
export function form({ title, fields, submit, action, extra }) {
  const alert = h('p', { class: 'error', role: 'alert', hidden: true });
  const button = h('button', { type: 'submit' }, submit);
  const el = h('form', { novalidate: true, 'aria-label': title }, h('h2', {}, title), ...fields, alert, button, extra);
  el.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const values = Object.fromEntries(new FormData(el).entries());
    alert.hidden = true;
    button.disabled = true;
    try {
      await action(values, el);
    } catch (e) {
      alert.textContent = e.message;
      alert.hidden = false;
    } finally {
      button.disabled = false;
    }
  });
  el.showError = (msg) => { alert.textContent = msg; alert.hidden = false; };
  return el;
}

// Reads `#token=...` style parameters from the URL fragment.
export function fragmentParam(name) {
  return new URLSearchParams(location.hash.slice(1)).get(name);
}
