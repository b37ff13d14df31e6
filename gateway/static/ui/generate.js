// The "Generate a video" form. What the generate function can do right now
// (GET /api/capabilities) decides which modes and portraits can be chosen, so an
// unavailable one is shown as such instead of failing after submit. A portrait of
// one's own is previewed when picked and uploaded (POST /api/portraits) on submit.

import { api, ApiError } from './api.js';
import { h } from './dom.js';
import { isBusy, submitOnce } from './forms.js';

export function setupGenerate(form, banner, { onSubmitted }) {
  const select = form.querySelector('#gen-profile');
  const button = form.querySelector('button[type="submit"]');
  const portraits = form.querySelector('#portraits');
  const image = form.querySelector('#gen-portrait');
  const preview = form.querySelector('#gen-portrait-preview');
  let profiles = [];
  let portraitChosen = false; // the person picked one: the server's default no longer applies
  let blocked = 'Checking what the server can do…'; // why submitting is impossible, or null
  let uploaded = null; // {file, id}: the picked image, already uploaded

  function mode() {
    return form.elements.mode.value;
  }

  function showMode() {
    for (const el of form.querySelectorAll('[data-mode]')) el.hidden = el.dataset.mode !== mode();
  }

  function showPortrait() {
    const portrait = form.elements.portrait.value;
    for (const el of form.querySelectorAll('[data-portrait]')) el.hidden = el.dataset.portrait !== portrait;
  }

  function refreshButton() {
    const reason = blocked || (profiles.length ? null : 'Train a profile first.');
    button.disabled = Boolean(reason) || isBusy(form);
    button.title = reason || '';
  }

  // Enable or disable one radio (a mode or a portrait) with the server's reason.
  function setChoice(name, value, available, reason) {
    const radio = form.querySelector(`input[name="${name}"][value="${value}"]`);
    radio.disabled = !available;
    form.querySelector(`[data-reason-for="${value}"]`).textContent = available ? '' : reason;
    if (!available && radio.checked) {
      const other = [...form.querySelectorAll(`input[name="${name}"]`)].find((r) => !r.disabled);
      if (other) other.checked = true;
    }
  }

  // `entries`: {name: {available, reason}} or a list of names that are available.
  function choices(name, values, entries) {
    for (const value of values) {
      let available = true;
      let reason = '';
      if (Array.isArray(entries) && entries.length) {
        available = entries.includes(value);
        reason = 'Not offered by this server.';
      } else if (entries && typeof entries === 'object' && !Array.isArray(entries)) {
        const entry = entries[value];
        available = !entry || entry.available !== false;
        reason = (entry && entry.reason) || 'Not available on this server.';
      }
      setChoice(name, value, available, reason);
    }
  }

  function setCapabilities(caps) {
    const fn = caps?.functions?.generate;
    const gen = fn?.capabilities?.generate || {};
    if (!fn || !fn.replicas) blocked = 'The generate function is not running.';
    else if (gen.available === false) blocked = gen.reason || 'Video generation is not available.';
    else blocked = null;
    banner.hidden = !blocked || blocked.startsWith('Checking');
    banner.textContent = blocked || '';
    choices('mode', ['direct', 'guided'], gen.modes);
    portraits.hidden = !gen.portraits || typeof gen.portraits !== 'object';
    if (!portraits.hidden) {
      const preferred = form.querySelector(`input[name="portrait"][value="${gen.defaultPortrait}"]`);
      if (preferred && !portraitChosen) preferred.checked = true;
      choices('portrait', ['photo', 'render', 'upload'], gen.portraits);
    }
    showMode();
    showPortrait();
    refreshButton();
  }

  function setProfiles(list) {
    profiles = list;
    const chosen = select.value;
    select.replaceChildren(
      ...(list.length
        ? list.map((p) => h('option', { value: p.id, text: p.name }))
        : [h('option', { value: '', text: 'No profiles yet' })]),
    );
    if (list.some((p) => p.id === chosen)) select.value = chosen;
    refreshButton();
  }

  function choose(profile) {
    select.value = profile.id;
    form.scrollIntoView({ behavior: 'smooth', block: 'start' });
    form.elements[mode() === 'guided' ? 'prompt' : 'narration'].focus();
  }

  form.addEventListener('change', (ev) => {
    if (ev.target.name === 'mode') showMode();
    if (ev.target.name === 'portrait') {
      portraitChosen = true;
      showPortrait();
    }
  });

  image.addEventListener('change', () => {
    if (preview.src) URL.revokeObjectURL(preview.src);
    const file = image.files[0];
    preview.hidden = !file;
    if (file) preview.src = URL.createObjectURL(file);
    else preview.removeAttribute('src');
  });
  preview.addEventListener('error', () => (preview.hidden = true)); // not an image: the server will say so

  // The picked image's id on the server, uploading it unless that is done already.
  async function portraitId() {
    const file = image.files[0];
    if (!file) throw new ApiError('Pick an image for the portrait.', { field: 'image' });
    if (uploaded?.file !== file) {
      const data = new FormData();
      data.append('image', file, file.name);
      try {
        uploaded = { file, id: (await api.portrait(data)).portraitId };
      } catch (err) {
        err.field ||= 'image'; // shown next to the file input, whatever went wrong
        throw err;
      }
    }
    return uploaded.id;
  }

  // The render options that were filled in; the server has defaults for the others.
  function renderOptions() {
    const out = {};
    for (const name of ['steps', 'seed', 'guidanceScale']) {
      const raw = form.elements[name].value.trim();
      if (raw !== '') out[name] = Number(raw);
    }
    if (form.elements.scheduler.value) out.scheduler = form.elements.scheduler.value;
    return out;
  }

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (button.disabled) return;
    submitOnce(
      form,
      async () => {
        const body = { profileId: select.value || null, mode: mode(), options: {} };
        if (body.mode === 'direct') {
          body.narration = form.elements.narration.value;
          const stage = form.elements.stage.value.trim();
          if (stage) body.stage = stage;
        } else {
          body.prompt = form.elements.prompt.value;
        }
        if (!portraits.hidden) {
          const portrait = form.elements.portrait.value;
          body.options.portrait = portrait;
          if (portrait === 'upload') body.options.portraitImage = await portraitId();
          if (portrait === 'render') Object.assign(body.options, renderOptions());
        }
        const accepted = await api.generate(body);
        const profile = profiles.find((p) => p.id === body.profileId);
        onSubmitted(accepted.jobId, profile ? profile.name : null);
      },
      refreshButton,
    );
  });

  showMode();
  showPortrait();
  refreshButton();
  return { setCapabilities, setProfiles, choose };
}
