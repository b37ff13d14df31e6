// The live job list. It is built from GET /api/jobs and kept current by the
// WebSocket (no polling): every message updates one job and re-renders its row.
// A finished job can be deleted (DELETE /api/jobs/{id}: its inputs and outputs go).

import { api } from './api.js';
import { lossChart } from './chart.js';
import { downloadLink, fmtBytes, fmtDuration, h } from './dom.js';

const TERMINAL = new Set(['completed', 'failed', 'cancelled']);
const ACTIVE = new Set(['queued', 'running']);
const STEPS = {
  train: ['prepare', 'voice', 'load', 'encode', 'train', 'export'],
  generate: ['script', 'speech', 'stage', 'animate', 'finish'],
};
const LIST_LIMIT = 50;
const TYPE_TITLES = { train: 'Training', generate: 'Video' };
const LORA_FILES = {
  'pytorch_lora_weights.safetensors': 'LoRA (diffusers)',
  'kohya_lora.safetensors': 'LoRA (kohya)',
};

export class Jobs {
  constructor(list, empty, socket, { onTrained = () => {} } = {}) {
    this.list = list;
    this.empty = empty;
    this.socket = socket;
    this.onTrained = onTrained;
    this.jobs = new Map(); // jobId -> job state
    this.rows = new Map(); // jobId -> row elements
    setInterval(() => this.tick(), 1000);
  }

  // (Re)build from the server: on page load and after a reconnect, to pick up jobs
  // started elsewhere meanwhile. Jobs already followed keep their live state.
  async load() {
    let page;
    try {
      page = await api.jobs(LIST_LIMIT);
    } catch (err) {
      this.empty.hidden = false;
      this.empty.textContent = `Could not load the jobs: ${err.message}`;
      this.empty.classList.add('error');
      return;
    }
    this.empty.classList.remove('error');
    this.empty.textContent = 'No jobs yet.';
    for (const view of [...page.jobs].reverse()) {
      if (this.jobs.has(view.jobId)) continue;
      this.add(view.jobId, view.type, null, view);
    }
  }

  // A job to show and follow: just submitted here (label given) or listed by the server.
  add(jobId, type, label = null, view = null) {
    let job = this.jobs.get(jobId);
    if (!job) {
      job = { jobId, type, label, state: 'queued', progress: 0, losses: [], done: new Set() };
      this.jobs.set(jobId, job);
    }
    if (view) this.merge(job, view);
    if (!TERMINAL.has(job.state)) this.socket.subscribe(jobId);
    if (!view) this.fetchTimes(job);
    this.render(job);
  }

  // One-off lookup for what WebSocket messages do not carry (created/started times).
  async fetchTimes(job) {
    try {
      const view = await api.status(job.jobId);
      // The server's times win over what a snapshot let us guess.
      for (const key of ['createdAt', 'startedAt', 'finishedAt']) if (view[key]) job[key] = view[key];
      job.type ||= view.type;
      this.render(job);
    } catch {
      // Not fatal: the row just shows no elapsed time yet.
    }
  }

  merge(job, view) {
    Object.assign(job, {
      type: view.type || job.type,
      state: view.state,
      progress: view.progress ?? job.progress,
      step: view.step,
      message: view.message,
      etaSeconds: view.etaSeconds,
      error: view.error,
      result: view.result,
      createdAt: view.createdAt,
      startedAt: view.startedAt,
      finishedAt: view.finishedAt,
    });
  }

  onMessage(msg) {
    if (msg.type === 'pong' || !msg.jobId) return;
    const job = this.jobs.get(msg.jobId);
    if (!job) return;
    if (msg.code) {
      // A protocol answer (e.g. unknown_job: it expired from the live store), not a job event.
      job.note = msg.message;
      this.socket.forget(job.jobId);
      this.render(job);
      return;
    }
    this.apply(job, msg);
    this.render(job);
  }

  apply(job, msg) {
    if (msg.step && job.step && msg.step !== job.step) job.done.add(job.step);
    if (msg.snapshot && msg.step) {
      const order = STEPS[job.type] || [];
      for (const s of order.slice(0, Math.max(order.indexOf(msg.step), 0))) job.done.add(s);
    }
    for (const key of ['state', 'step', 'message', 'error', 'result']) {
      if (msg[key] !== undefined && msg[key] !== null) job[key] = msg[key];
    }
    if (msg.progress !== undefined && msg.progress !== null) job.progress = msg.progress;
    job.etaSeconds = msg.etaSeconds ?? null;
    // A snapshot's time is its last update, not its start.
    if (msg.state === 'running' && !msg.snapshot && !job.startedAt && msg.ts) job.startedAt = msg.ts;
    if (TERMINAL.has(msg.state) && !job.finishedAt && msg.ts) job.finishedAt = msg.ts;

    const m = msg.metrics;
    if (m && Number.isFinite(m.loss) && Number.isFinite(m.step)) {
      // A resumed run reports from its checkpoint again: keep one loss per step.
      while (job.losses.length && job.losses[job.losses.length - 1][0] >= m.step) job.losses.pop();
      job.losses.push([m.step, m.loss]);
      job.totalSteps = m.totalSteps;
    }
    if (TERMINAL.has(job.state)) {
      this.socket.forget(job.jobId);
      if (job.state === 'completed' && !job.result) this.refetch(job);
      if (job.state === 'completed' && job.type === 'train') this.onTrained(job);
    }
  }

  async refetch(job) {
    try {
      this.merge(job, await api.status(job.jobId));
      this.render(job);
    } catch (err) {
      job.note = `Could not load the result: ${err.message}`;
      this.render(job);
    }
  }

  async cancel(job, button) {
    button.disabled = true;
    button.textContent = 'Cancelling…';
    try {
      await api.cancel(job.jobId);
      job.note = null;
    } catch (err) {
      job.note = err.message;
      button.disabled = false;
      button.textContent = 'Cancel';
    }
    this.render(job);
  }

  async remove(job, button) {
    const what = [TYPE_TITLES[job.type] || 'Job', job.label || job.result?.name].filter(Boolean).join(' · ');
    if (!window.confirm(`Delete the job “${what}” with its inputs and results?`)) return;
    button.disabled = true;
    try {
      await api.deleteJob(job.jobId);
    } catch (err) {
      job.note = `Could not delete the job: ${err.message}`;
      button.disabled = false;
      this.render(job);
      return;
    }
    this.drop(job.jobId);
  }

  drop(jobId) {
    this.socket.forget(jobId);
    this.jobs.delete(jobId);
    this.rows.get(jobId)?.el.remove();
    this.rows.delete(jobId);
    this.empty.hidden = this.jobs.size > 0;
  }

  // Drop the finished jobs the server no longer has (deleting a profile deletes the jobs
  // made with it). A job older than the listed page may still exist: it stays.
  async prune() {
    let page;
    try {
      page = await api.jobs(LIST_LIMIT);
    } catch {
      return; // the rows stay until the next load; nothing is lost
    }
    const listed = new Set(page.jobs.map((v) => v.jobId));
    const complete = page.jobs.length < LIST_LIMIT;
    const oldest = Math.min(...page.jobs.map((v) => v.createdAt || Infinity));
    for (const job of [...this.jobs.values()]) {
      if (listed.has(job.jobId) || !TERMINAL.has(job.state)) continue;
      if (complete || (job.createdAt && job.createdAt >= oldest)) this.drop(job.jobId);
    }
  }

  tick() {
    for (const [jobId, job] of this.jobs) {
      if (ACTIVE.has(job.state)) this.rows.get(jobId)?.setTimes(job);
    }
  }

  // --- rendering ---------------------------------------------------------------------------
  render(job) {
    let row = this.rows.get(job.jobId);
    if (!row) {
      row = this.buildRow(job);
      this.rows.set(job.jobId, row);
      this.list.prepend(row.el);
    }
    this.empty.hidden = this.jobs.size > 0;
    row.update(job);
  }

  buildRow(job) {
    const title = h('strong', { class: 'job-title' });
    const state = h('span', { class: 'state' });
    const cancel = h('button', { type: 'button', class: 'cancel', text: 'Cancel' });
    cancel.addEventListener('click', () => this.cancel(this.jobs.get(job.jobId), cancel));
    const remove = h('button', { type: 'button', class: 'delete', text: 'Delete' });
    remove.addEventListener('click', () => this.remove(this.jobs.get(job.jobId), remove));
    const steps = h('ol', { class: 'steps' });
    const bar = h('progress', { max: '100', value: '0' });
    const pct = h('span', { class: 'pct' });
    const stepName = h('span', { class: 'step-name' });
    const message = h('span', { class: 'message' });
    const elapsed = h('span', { class: 'elapsed' });
    const eta = h('span', { class: 'eta' });
    const error = h('p', { class: 'job-error', role: 'alert' });
    const note = h('p', { class: 'job-note' });
    const chart = h('div', { class: 'chart' });
    const result = h('div', { class: 'job-result' });
    const el = h(
      'li',
      { class: 'job', dataset: { jobId: job.jobId } },
      h('div', { class: 'job-head' }, title, state, cancel, remove),
      steps,
      h('div', { class: 'bar' }, bar, pct),
      h('p', { class: 'job-step' }, stepName, message),
      h('p', { class: 'job-times' }, elapsed, eta),
      error,
      note,
      chart,
      result,
    );
    let shownResult = null;
    let shownLosses = -1;

    const setTimes = (j) => {
      const start = j.startedAt || j.createdAt;
      const end = TERMINAL.has(j.state) ? j.finishedAt : Date.now() / 1000;
      elapsed.textContent = start && end ? `elapsed ${fmtDuration(end - start)}` : '';
      eta.textContent =
        j.state === 'running' && j.etaSeconds != null ? `about ${fmtDuration(j.etaSeconds)} left` : '';
    };

    const update = (j) => {
      el.dataset.type = j.type || '';
      el.dataset.state = j.state;
      el.dataset.step = j.step || '';
      title.textContent = [TYPE_TITLES[j.type] || j.type || 'Job', j.label || j.result?.name]
        .filter(Boolean)
        .join(' · ');
      title.title = j.jobId;
      // Screen readers hear which job a bar or a button belongs to.
      bar.setAttribute('aria-label', `Progress of ${title.textContent}`);
      cancel.setAttribute('aria-label', `Cancel ${title.textContent}`);
      state.textContent = j.state;
      state.dataset.state = j.state;
      cancel.hidden = !ACTIVE.has(j.state);
      // Only a finished job: a running one is cancelled first.
      remove.setAttribute('aria-label', `Delete ${title.textContent}`);
      remove.hidden = !TERMINAL.has(j.state);

      const order = STEPS[j.type] || [];
      steps.replaceChildren(
        ...order.map((s) => {
          const cls =
            j.state === 'completed' || (j.done.has(s) && s !== j.step)
              ? 'done'
              : s === j.step && ACTIVE.has(j.state)
                ? 'current'
                : '';
          return h('li', { class: cls, dataset: { step: s }, text: s });
        }),
      );
      const value = Math.round((j.progress || 0) * 10) / 10;
      bar.setAttribute('value', String(value));
      pct.textContent = `${Math.round(value)}%`;
      stepName.textContent = j.step || '';
      message.textContent = j.message && j.message !== j.step ? j.message : '';
      setTimes(j);
      error.textContent = j.state === 'failed' ? j.error || j.message || 'failed' : '';
      note.textContent = j.note || '';

      if (j.type === 'train' && j.losses.length && j.losses.length !== shownLosses && !j.result) {
        shownLosses = j.losses.length;
        chart.replaceChildren(
          lossChart(j.losses.map(([, loss]) => loss), { totalSteps: j.totalSteps || j.losses.length }),
        );
      }
      if (j.state === 'completed' && j.result && shownResult !== j.result) {
        shownResult = j.result;
        chart.replaceChildren();
        result.replaceChildren(...renderResult(j).filter(Boolean));
      }
    };
    return { el, update, setTimes };
  }
}

function renderResult(job) {
  const r = job.result;
  if (job.type === 'train') {
    const curve = r.lossCurve || job.losses.map(([, loss]) => loss);
    const loss = Number.isFinite(r.finalLoss) ? ` · final loss ${r.finalLoss.toPrecision(3)}` : '';
    const links = (r.artifacts || [])
      .filter((a) => LORA_FILES[a.name] && a.url)
      .map((a) => downloadLink(LORA_FILES[a.name], a.url, `${a.name} ${fmtBytes(a.size)}`));
    return [
      h('p', { text: `Profile “${r.name || job.label || ''}” saved · ${r.steps ?? curve.length} steps${loss}` }),
      lossChart(curve, { totalSteps: r.steps || curve.length }),
      h('p', { class: 'downloads' }, links),
    ];
  }
  if (job.type === 'generate') {
    const artifacts = r.artifacts || [];
    const video = r.video || artifacts.find((a) => a.name === 'video.mp4');
    if (!video || !video.url) return [h('p', { text: 'Finished, but no video was returned.' })];
    const facts = [
      Number.isFinite(r.durationSeconds) ? `${r.durationSeconds.toFixed(1)} s` : null,
      fmtSize(r.size),
      r.portrait ? `portrait: ${r.portrait}` : null,
    ].filter(Boolean);
    const others = artifacts
      .filter((a) => a.url && a.name !== (video.name || 'video.mp4'))
      .map((a) => downloadLink(a.name, a.url, fmtBytes(a.size)));
    return [
      h('video', { controls: true, preload: 'auto', playsinline: true, src: video.url }),
      h('p', { class: 'downloads' }, downloadLink('Download MP4', video.url, 'video.mp4'), others),
      facts.length ? h('p', { class: 'hint', text: facts.join(' · ') }) : null,
      r.portraitNote ? h('p', { class: 'hint', text: r.portraitNote }) : null,
      r.script?.narration ? h('blockquote', { text: r.script.narration }) : null,
    ];
  }
  return [];
}

function fmtSize(size) {
  if (!size) return null;
  if (typeof size === 'number') return `${size}×${size}`;
  if (Array.isArray(size)) return size.join('×');
  if (typeof size === 'object') return `${size.width}×${size.height}`;
  return String(size);
}
