// Trained profiles (GET /api/profiles): portrait, base model, date, LoRA downloads,
// and deleting one (DELETE /api/profiles/{id}: the person's photos, voice, LoRA and
// portraits are removed for good).

import { api } from './api.js';
import { downloadLink, fmtBytes, fmtDate, h } from './dom.js';

const DOWNLOADS = [
  ['pytorch_lora_weights.safetensors', 'LoRA (diffusers)'],
  ['kohya_lora.safetensors', 'LoRA (kohya)'],
  ['metadata.json', 'metadata'],
];

export class Profiles {
  constructor(list, empty, { onChange = () => {}, onUse = () => {}, onDeleted = () => {} } = {}) {
    this.list = list;
    this.empty = empty;
    this.onChange = onChange;
    this.onUse = onUse;
    this.onDeleted = onDeleted;
    this.loading = null;
    this.stale = false;
  }

  load() {
    // Coalesce: several trainings finishing together cause one reload. A load asked for
    // while one is under way runs again after it: that one may predate the new profile.
    if (this.loading) {
      this.stale = true;
      return this.loading;
    }
    this.loading = (async () => {
      do {
        this.stale = false;
        await this.fetch();
      } while (this.stale);
    })().finally(() => (this.loading = null));
    return this.loading;
  }

  async fetch() {
    let body;
    try {
      body = await api.profiles();
    } catch (err) {
      this.empty.hidden = false;
      this.empty.textContent = `Could not load the profiles: ${err.message}`;
      this.empty.classList.add('error');
      return;
    }
    const profiles = [...(body.profiles || [])].sort((a, b) => b.created_at - a.created_at);
    this.empty.classList.remove('error');
    this.empty.textContent = 'No trained profiles yet.';
    this.empty.hidden = profiles.length > 0;
    this.list.replaceChildren(...profiles.map((p) => this.row(p)));
    this.onChange(profiles);
  }

  row(p) {
    const thumb = h('div', { class: 'thumb' });
    const links = h('p', { class: 'downloads' });
    const error = h('p', { class: 'field-error', role: 'alert' });
    const remove = h('button', {
      type: 'button',
      class: 'delete',
      text: 'Delete',
      'aria-label': `Delete profile ${p.name}`,
    });
    remove.addEventListener('click', () => this.remove(p, remove, error));
    const placeholder = p.metadata && p.metadata.placeholderModel ? ' (placeholder weights)' : '';
    const el = h(
      'li',
      { class: 'profile', dataset: { profileId: p.id } },
      thumb,
      h(
        'div',
        {},
        h('strong', { class: 'profile-name', text: p.name }),
        h('p', { class: 'hint', text: `${p.base_model || 'unknown base model'}${placeholder}` }),
        h('p', { class: 'hint', text: `${fmtDate(p.created_at)} · trigger “${p.trigger_token || ''}”` }),
        links,
        h(
          'div',
          { class: 'actions' },
          h('button', { type: 'button', class: 'use', text: 'Make a video', onclick: () => this.onUse(p) }),
          remove,
        ),
        error,
      ),
    );
    this.fill(p, thumb, links);
    return el;
  }

  async remove(p, button, error) {
    const question =
      `Delete the profile “${p.name}”? Its photos, voice clip, LoRA files and rendered ` +
      'portraits are removed for good, and so are its training job and every video made with it.';
    if (!window.confirm(question)) return;
    button.disabled = true;
    error.textContent = '';
    try {
      await api.deleteProfile(p.id);
    } catch (err) {
      error.textContent = `Could not delete the profile: ${err.message}`;
      button.disabled = false;
      return;
    }
    this.onDeleted(p);
    await this.load();
  }

  async fill(p, thumb, links) {
    const urls = await this.artifactUrls(p);
    const portrait = urls['portrait.png'];
    if (portrait) thumb.append(h('img', { src: portrait, alt: `${p.name}`, loading: 'lazy' }));
    const sizes = Object.fromEntries((p.artifacts || []).map((a) => [a.name, a.size]));
    const available = DOWNLOADS.filter(([name]) => urls[name]);
    links.replaceChildren(
      ...(available.length
        ? available.map(([name, label]) => downloadLink(label, urls[name], `${name} ${fmtBytes(sizes[name])}`))
        : [h('span', { class: 'hint', text: 'Downloads are not available for this profile.' })]),
    );
  }

  // Download URLs: GET /api/profiles presigns them afresh on every load. Only a
  // profile listed without them falls back to the result of the training job that
  // made it (presigned when it finished).
  async artifactUrls(p) {
    const urls = urlsOf(p.artifacts);
    if (Object.keys(urls).length || !p.job_id) return urls;
    try {
      return urlsOf((await api.status(p.job_id)).result?.artifacts);
    } catch {
      return {}; // Left without links; the row says so.
    }
  }
}

function urlsOf(artifacts) {
  return Object.fromEntries((artifacts || []).filter((a) => a.url).map((a) => [a.name, a.url]));
}
