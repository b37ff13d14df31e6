// Talking to the gateway's REST API. Every error becomes an ApiError carrying the
// server's own sentence and, where it can tell, the form field it is about.

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

async function request(path, { method = 'GET', json, form, headers = {}, okStatuses = [] } = {}) {
  const init = { method, headers: { accept: 'application/json', ...headers } };
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
  health: () => request('/health', { okStatuses: [503] }), // 503 still has the report
  capabilities: () => request('/api/capabilities'),
  jobs: (limit = 50) => request(`/api/jobs?limit=${limit}`),
  status: (jobId) => request(`/api/status/${encodeURIComponent(jobId)}`),
  cancel: (jobId) => request(`/api/jobs/${encodeURIComponent(jobId)}/cancel`, { method: 'POST' }),
  profiles: () => request('/api/profiles'),
  train: (formData) => request('/api/train', { method: 'POST', form: formData, headers: idempotent() }),
  portrait: (formData) => request('/api/portraits', { method: 'POST', form: formData }),
  generate: (body) => request('/api/generate', { method: 'POST', json: body, headers: idempotent() }),
};
