// One WebSocket to the gateway's hub (`/ws`), kept open: it reconnects with
// backoff and resubscribes every job with the last event id it saw, so the hub
// replays exactly what was missed (or sends a fresh snapshot if that is gone).
//
// Protocol: send {type: "subscribe", jobId, lastEventId?}; receive a snapshot
// ({snapshot: true, ...}) and then the job's events, each with an `eventId`.

const BACKOFF_MS = [500, 1000, 2000, 4000, 8000];
const MAX_BACKOFF_MS = 10000;
const STABLE_MS = 5000; // a connection open this long resets the backoff
// A connection that died without a close (sleep, a network change, a proxy's idle cut)
// never says so: ping it, and drop it when nothing at all came back for this long.
const PING_MS = 20000;
const SILENT_MS = PING_MS + 10000;

export class JobSocket {
  constructor(url, { onMessage, onState }) {
    this.url = url;
    this.onMessage = onMessage;
    this.onState = onState;
    this.lastEventId = new Map(); // jobId -> last event id seen (null: none yet)
    this.ws = null;
    this.attempt = 0;
    this.openedAt = 0;
    this.everOpened = false;
    this.timer = null;
    this.heartbeat = null;
    this.heardAt = 0;
  }

  connect() {
    clearTimeout(this.timer);
    this.onState(this.everOpened ? 'reconnecting' : 'connecting');
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.addEventListener('open', () => {
      this.openedAt = this.heardAt = Date.now();
      this.heartbeat = setInterval(() => this.beat(ws), PING_MS);
      const resumed = this.everOpened;
      this.everOpened = true;
      for (const jobId of this.lastEventId.keys()) this.send(jobId);
      this.onState('open', { resumed });
    });
    ws.addEventListener('message', (ev) => {
      this.heardAt = Date.now();
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (msg.jobId && msg.eventId && this.lastEventId.has(msg.jobId)) {
        this.lastEventId.set(msg.jobId, msg.eventId);
      }
      this.onMessage(msg);
    });
    ws.addEventListener('close', () => this.dropped(ws));
  }

  beat(ws) {
    if (Date.now() - this.heardAt <= SILENT_MS) {
      ws.send(JSON.stringify({ type: 'ping' }));
      return;
    }
    this.dropped(ws);
    ws.close(); // its close event comes late, if at all; dropped() already moved on
  }

  // The connection is gone: retry with backoff. Once per connection.
  dropped(ws) {
    if (this.ws !== ws) return;
    this.ws = null;
    clearInterval(this.heartbeat);
    if (this.openedAt && Date.now() - this.openedAt > STABLE_MS) this.attempt = 0;
    this.openedAt = 0;
    const base = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    const delay = Math.min(MAX_BACKOFF_MS, base * (0.75 + Math.random() * 0.5));
    this.attempt += 1;
    this.onState('closed', { retryInMs: delay });
    this.timer = setTimeout(() => this.connect(), delay);
  }

  subscribe(jobId) {
    if (this.lastEventId.has(jobId)) return;
    this.lastEventId.set(jobId, null);
    this.send(jobId);
  }

  // Stop following a job (it ended): the hub forgets it and a reconnect skips it.
  forget(jobId) {
    if (!this.lastEventId.delete(jobId)) return;
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ type: 'unsubscribe', jobId }));
    }
  }

  send(jobId) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return; // sent on open
    const msg = { type: 'subscribe', jobId };
    const last = this.lastEventId.get(jobId);
    if (last) msg.lastEventId = last;
    this.ws.send(JSON.stringify(msg));
  }
}
