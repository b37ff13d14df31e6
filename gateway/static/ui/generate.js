// The "Generate a video" form. What the generate function can do right now
// (GET /api/capabilities) decides which modes and portraits can be chosen, so an
// unavailable one is shown as such instead of failing after submit.

import { api } from './api.js';
import { h } from './dom.js';
import { isBusy, submitOnce } from './forms.js';

export function setupGenerate(form, banner, { onSubmitted }) {
  const select = form.querySelector('#gen-profile');
  const button = form.querySelector('button[type="submit"]');
  const portraits = form.querySelector('#portraits');
  let profiles = [];
  let portraitChosen = false; // the person picked one: the server's default no longer applies
  let blocked = 'Checking what the server can do…'; // why submitting is impossible, or null

  function mode() {
    return form.elements.mode.value;
  }

  function showMode() {
    for (const el of form.querySelectorAll('[data-mode]')) el.hidden = el.dataset.mode !== mode();
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
      choices('portrait', ['photo', 'render'], gen.portraits);
    }
    showMode();
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
    if (ev.target.name === 'portrait') portraitChosen = true;
  });

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
        if (!portraits.hidden) body.options.portrait = form.elements.portrait.value;
        const accepted = await api.generate(body);
        const profile = profiles.find((p) => p.id === body.profileId);
        onSubmitted(accepted.jobId, profile ? profile.name : null);
      },
      refreshButton,
    );
  });

  showMode();
  refreshButton();
  return { setCapabilities, setProfiles, choose };
}
