// Talking to the gateway's REST API. Every error becomes an ApiError carrying the
// server's own sentence and, where it can tell, the form field it is about.
//
// The browser signs requests with the session cookie (HttpOnly: script never sees it).
// Every state-changing request also carries `X-MySpinBot-CSRF: 1`: a page on another
// origin can make a browser send the cookie with a form post, but cannot add a
// header, so the gateway refuses cookie-signed changes without it.

const CSRF = { 'X-MySpinBot-CSRF': '1' };
const SAFE_METHODS = new Set(['GET', 'HEAD']);

// Called when a request says the session is gone (401), so the page can ask the
// person to sign in again. The session routes themselves answer 401 for a bad token:
// those are the sign-in form's errors, not this.
let unauthorized = () => {};
export function onUnauthorized(handler) {
  unauthorized = handler;
}

export class ApiError extends Error {
  constructor(message, { status = 0, field = null, details = [] } = {}) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.field = field;
    this.details = details;
  }
}

// Which field an error body is about: its `field`, else the first detail's field,
// else the first `name` the sentence quotes in backticks ("`narration` must not be empty").
export function fieldOf(body) {
  if (!body || typeof body !== 'object') return null;
  if (body.field) return String(body.field).split('.')[0];
  const detail = (body.details || []).find((d) => d && d.field);
  if (detail) return String(detail.field).split('.')[0];
  const quoted = /`([A-Za-z_]+)`/.exec(body.error || '');
  return quoted ? quoted[1] : null;
}

async function request(
  path,
  { method = 'GET', json, form, headers = {}, okStatuses = [], signIn = false } = {},
) {
  const csrf = SAFE_METHODS.has(method) ? {} : CSRF;
  const init = { method, headers: { accept: 'application/json', ...csrf, ...headers } };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers['content-type'] = 'application/json';
  } else if (form) {
    init.body = form;
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (err) {
    throw new ApiError(`Could not reach the gateway (${err.message}); is it running?`);
  }
  const text = await resp.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!resp.ok && !okStatuses.includes(resp.status)) {
    if (resp.status === 401 && !signIn) unauthorized(body && body.error);
    const message = (body && body.error) || `${method} ${path} failed: HTTP ${resp.status}`;
    throw new ApiError(message, {
      status: resp.status,
      field: fieldOf(body),
      details: (body && body.details) || [],
    });
  }
  return body;
}

const idempotent = () => ({ 'Idempotency-Key': crypto.randomUUID() });

export const api = {
  // The session: exchange a token for the cookie, who am I, sign out.
  signIn: (token) => request('/api/session', { method: 'POST', json: { token }, signIn: true }),
  me: () => request('/api/me', { signIn: true }),
  // Already signed out (401) is signed out.
  signOut: () => request('/api/session', { method: 'DELETE', signIn: true, okStatuses: [401] }),
  health: () => request('/health', { okStatuses: [503] }), // 503 still has the report
  capabilities: () => request('/api/capabilities'),
  jobs: (limit = 50) => request(`/api/jobs?limit=${limit}`),
  status: (jobId) => request(`/api/status/${encodeURIComponent(jobId)}`),
  cancel: (jobId) => request(`/api/jobs/${encodeURIComponent(jobId)}/cancel`, { method: 'POST' }),
  profiles: () => request('/api/profiles'),
  train: (formData) => request('/api/train', { method: 'POST', form: formData, headers: idempotent() }),
  portrait: (formData) => request('/api/portraits', { method: 'POST', form: formData }),
  generate: (body) => request('/api/generate', { method: 'POST', json: body, headers: idempotent() }),
  // Deleting twice is fine: a 404 means it is gone already.
  deleteProfile: (id) =>
    request(`/api/profiles/${encodeURIComponent(id)}`, { method: 'DELETE', okStatuses: [404] }),
  deleteJob: (jobId) =>
    request(`/api/jobs/${encodeURIComponent(jobId)}`, { method: 'DELETE', okStatuses: [404] }),
};
