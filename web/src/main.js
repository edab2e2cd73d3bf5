// The shell's entry point. It asks the daemon for its health and shows it;
// the screens for accounts, apps and grains grow from here.
import './style.css';
import { getJSON } from './api.js';

const status = document.getElementById('status');

async function showHealth() {
  try {
    const h = await getJSON('/api/health');
    status.textContent = `Granary ${h.version} is running (store schema ${h.store.schema_version}).`;
    status.dataset.state = h.status;
  } catch (e) {
    status.textContent = `The server did not answer: ${e.message}`;
    status.dataset.state = 'error';
  }
}

showHealth();
