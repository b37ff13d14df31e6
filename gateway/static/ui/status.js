// The status bar: health of every component (GET /health), refreshed every few
// seconds while the page is visible and right after the live connection returns.

import { api } from './api.js';
import { h } from './dom.js';

const EVERY_MS = 15000;
const ORDER = ['gateway', 'redis', 'database', 's3', 'triton'];

export function startStatus(bar, notices, { onHealth = () => {} } = {}) {
  let timer = null;
  let latest = 0; // only the newest of overlapping refreshes renders and re-arms the timer
  let shown = '';

  // The colour is not the only sign: a component that is not ok says so in words.
  function pill({ name, status, detail }) {
    return h('span', {
      class: 'pill',
      dataset: { status, component: name },
      title: detail || status,
      text: status === 'ok' ? name : `${name}: ${status}`,
    });
  }

  // The bar is a live region: re-render only what changed, or screen readers re-read it.
  function show(pills, overall) {
    const key = JSON.stringify([pills, overall]);
    if (key === shown) return;
    shown = key;
    bar.replaceChildren(...pills.map(pill));
    bar.dataset.overall = overall;
  }

  function render(health) {
    const comps = health.components || {};
    const names = Object.keys(comps).filter((n) => n !== 'functions');
    names.sort((a, b) => (ORDER.indexOf(a) + 1 || 99) - (ORDER.indexOf(b) + 1 || 99));
    const pills = names.map((n) => ({ name: n, status: comps[n].status, detail: comps[n].error }));
    for (const [name, fn] of Object.entries(comps.functions || {}).sort()) {
      const replicas = `${fn.replicas} replica${fn.replicas === 1 ? '' : 's'}`;
      pills.push({ name, status: fn.status, detail: fn.error ? `${fn.error} (${replicas})` : replicas });
    }
    show(pills, health.status || 'unknown');
    const lines = health.notices || [];
    notices.hidden = !lines.length;
    notices.textContent = lines.join(' ');
  }

  async function refresh() {
    clearTimeout(timer);
    const mine = ++latest;
    try {
      const health = await api.health();
      if (mine !== latest) return;
      render(health);
      onHealth(health);
    } catch (err) {
      if (mine !== latest) return;
      show([{ name: 'gateway', status: 'down', detail: err.message }], 'down');
    }
    if (!document.hidden) timer = setTimeout(refresh, EVERY_MS);
  }

  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) refresh();
  });
  refresh();
  return { refresh };
}
