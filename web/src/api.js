// A small client for the daemon's JSON API on the shell's own origin.
export async function getJSON(path) {
  const res = await fetch(path, { headers: { Accept: 'application/json' }, credentials: 'same-origin' });
  let body = null;
  try {
    body = await res.json();
  } catch {
    throw new Error(`${res.status} ${res.statusText} (not JSON)`);
  }
  if (!res.ok) throw new Error(body && body.error ? body.error : `${res.status} ${res.statusText}`);
  return body;
}
