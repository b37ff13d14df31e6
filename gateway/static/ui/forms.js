// Showing server errors next to the field they are about, and one request at a time.

export function clearErrors(form) {
  for (const el of form.querySelectorAll('.field-error')) el.textContent = '';
  for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
}

// The visible error slot for `field`, else the form-wide one.
function slotFor(form, field) {
  const slots = [...form.querySelectorAll(`.field-error[data-error-for="${field}"]`)];
  const visible = slots.find((el) => !el.closest('[hidden]'));
  return visible || form.querySelector('.field-error[data-error-for="_form"]');
}

export function showError(form, err) {
  const field = err.field || '_form';
  const slot = slotFor(form, field);
  slot.textContent = err.message;
  const details = slot.closest('details');
  if (details) details.open = true;
  const input = form.querySelector(`[name="${field}"]`);
  if (input && input.type !== 'radio') input.setAttribute('aria-invalid', 'true');
  return slot;
}

export function isBusy(form) {
  return Boolean(form.dataset.busy);
}

// Run `send` unless a request from this form is already in flight; the submit
// button stays disabled until it settles, then `refresh` decides (default: enabled).
export async function submitOnce(form, send, refresh = null) {
  const button = form.querySelector('button[type="submit"]');
  if (isBusy(form)) return;
  form.dataset.busy = '1';
  form.setAttribute('aria-busy', 'true');
  button.disabled = true;
  clearErrors(form);
  try {
    await send();
  } catch (err) {
    showError(form, err);
  } finally {
    delete form.dataset.busy;
    form.removeAttribute('aria-busy');
    if (refresh) refresh();
    else button.disabled = false;
  }
}
