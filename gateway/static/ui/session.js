// Who is using the page. A session is a cookie the gateway sets (HttpOnly: this
// script never sees it) when given an access token: pasted into the sign-in form,
// or carried by the one-time sign-in link `myspinbot up` prints (/?token=...).

import { api, ApiError, onUnauthorized } from './api.js';
import { submitOnce } from './forms.js';

// Why the sign-in form is shown, carried across the reload that follows a sign-out or
// an ended session (the reload drops the live connection, timers and everything shown).
const REASON_KEY = 'myspinbot.signInReason';

// The token of a sign-in link, taken out of the address bar before anything else
// happens: it must not stay in the history, a bookmark, a shared screenshot, or be
// sent again by a reload.
function takeLinkToken() {
  const url = new URL(location.href);
  if (!url.searchParams.has('token')) return null;
  const token = url.searchParams.get('token');
  url.searchParams.delete('token');
  history.replaceState(history.state, '', `${url.pathname}${url.search}${url.hash}`);
  return token;
}

function restart(reason) {
  sessionStorage.setItem(REASON_KEY, reason);
  location.replace('/');
}

// A request answered 401 mid-use: the session expired, was signed out elsewhere or its
// token revoked. Start over at the sign-in form, saying so.
export function watchSession() {
  let ended = false;
  onUnauthorized(() => {
    if (ended) return;
    ended = true;
    restart('Your session has ended. Sign in again.');
  });
}

// Resolves with the signed-in user ({id, name, role}): the current session's, the
// sign-in link's, or, failing both, the one the sign-in form signs in.
export async function signIn({ pending, login, reason, form }) {
  const token = takeLinkToken();
  let why = sessionStorage.getItem(REASON_KEY);
  sessionStorage.removeItem(REASON_KEY);
  try {
    const user = token !== null ? await api.signIn(token) : await api.me();
    pending.hidden = true;
    return user;
  } catch (err) {
    if (token !== null) {
      why =
        err.status === 401 || err.status === 422
          ? `This sign-in link does not work: ${err.message}`
          : err.message;
    } else if (err.status !== 401) {
      why = err.message; // not "no session": e.g. the gateway is unreachable
    }
  }
  pending.hidden = true;
  reason.hidden = !why;
  reason.textContent = why || '';
  login.hidden = false;
  form.elements.token.focus();
  return new Promise((resolve) => {
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      submitOnce(form, async () => {
        const value = form.elements.token.value.trim();
        if (!value) throw new ApiError('Paste your access token.', { field: 'token' });
        let user;
        try {
          user = await api.signIn(value);
        } catch (err) {
          if (err.status === 401 || err.status === 422) err.field = 'token';
          throw err;
        }
        form.reset();
        login.hidden = true;
        resolve(user);
      });
    });
  });
}

// The signed-in user's name and the sign-out button.
export function showAccount({ account, name, button, error }, user) {
  name.textContent = user.name;
  name.title = `${user.role}`;
  account.hidden = false;
  button.addEventListener('click', async () => {
    button.disabled = true;
    error.textContent = '';
    try {
      await api.signOut();
    } catch (err) {
      error.textContent = `Could not sign out: ${err.message}`;
      button.disabled = false;
      return;
    }
    restart('You have signed out.');
  });
}
