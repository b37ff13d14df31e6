// The status bar: health of every component (GET /health), refreshed every few
// seconds while the page is visible and right after the live connection returns.

import { api } from './api.js';
import { h } from './dom.js';

const EVERY_MS = 15000;
const ORDER = ['gateway', 'redis', 'database', 's3', 'triton'];

export function startStatus(bar, notices, { onHealth = () => {} } = {}) {
  let timer = null;

  function pill(label, status, detail) {
    return h('span', {
      class: 'pill',
      dataset: { status, component: label },
      title: detail || status,
      text: label,
    });
  }

  function render(health) {
    const comps = health.components || {};
    const names = Object.keys(comps).filter((n) => n !== 'functions');
    names.sort((a, b) => (ORDER.indexOf(a) + 1 || 99) - (ORDER.indexOf(b) + 1 || 99));
    const pills = names.map((n) => pill(n, comps[n].status, comps[n].error));
    for (const [name, fn] of Object.entries(comps.functions || {}).sort()) {
      const replicas = `${fn.replicas} replica${fn.replicas === 1 ? '' : 's'}`;
      pills.push(pill(name, fn.status, fn.error ? `${fn.error} (${replicas})` : replicas));
    }
    bar.replaceChildren(...pills);
    bar.dataset.overall = health.status || 'unknown';
    const lines = health.notices || [];
    notices.hidden = !lines.length;
    notices.textContent = lines.join(' ');
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const health = await api.health();
      render(health);
      onHealth(health);
    } catch (err) {
      bar.replaceChildren(pill('gateway', 'down', err.message));
      bar.dataset.overall = 'down';
    }
    if (!document.hidden) timer = setTimeout(refresh, EVERY_MS);
  }

  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) refresh();
  });
  refresh();
  return { refresh };
}
