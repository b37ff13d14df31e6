// The signed-in page: one live connection, the job list, the profiles and the two
// forms, wired together. main.js starts it once someone has signed in.

import { api } from './api.js';
import { setupGenerate } from './generate.js';
import { Jobs } from './jobs.js';
import { Profiles } from './profiles.js';
import { startStatus } from './status.js';
import { setupTrain } from './train.js';
import { JobSocket } from './ws.js';

const $ = (sel) => document.querySelector(sel);

export function startApp() {
  const live = $('#live');
  const LIVE_TEXT = {
    connecting: 'connecting…',
    open: 'live',
    closed: 'connection lost; retrying…',
    reconnecting: 'reconnecting…',
  };

  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
  const socket = new JobSocket(url, {
    onMessage: (msg) => jobs.onMessage(msg),
    onState: (state, { resumed } = {}) => {
      live.dataset.live = state;
      live.textContent = LIVE_TEXT[state];
      if (state === 'open' && resumed) {
        // Back after a drop: pick up jobs started meanwhile and re-check the platform.
        jobs.load();
        profiles.load();
        status.refresh();
      }
    },
  });

  const jobs = new Jobs($('#jobs'), $('#jobs-empty'), socket, { onTrained: () => profiles.load() });
  const generate = setupGenerate($('#generate-form'), $('#generate-unavailable'), {
    onSubmitted: (jobId, profileName) => jobs.add(jobId, 'generate', profileName),
  });
  const profiles = new Profiles($('#profiles'), $('#profiles-empty'), {
    onChange: (list) => generate.setProfiles(list),
    onUse: (profile) => generate.choose(profile),
    onDeleted: () => jobs.prune(),
  });
  setupTrain($('#train-form'), { onSubmitted: (jobId, name) => jobs.add(jobId, 'train', name) });

  async function refreshCapabilities() {
    try {
      generate.setCapabilities(await api.capabilities());
    } catch {
      generate.setCapabilities(null);
    }
  }

  const status = startStatus($('#status'), $('#notices'), { onHealth: refreshCapabilities });
  jobs.load();
  profiles.load();
  socket.connect();
  $('#status').hidden = false;
  $('#app').hidden = false;
}
