// The page's entry point: first who is using it (a session, a sign-in link or the
// sign-in form), then the page itself.

import { startApp } from './app.js';
import { showAccount, signIn, watchSession } from './session.js';

const $ = (sel) => document.querySelector(sel);

watchSession();
const user = await signIn({
  pending: $('#signing-in'),
  login: $('#login'),
  reason: $('#login-reason'),
  form: $('#login-form'),
});
showAccount(
  { account: $('#account'), name: $('#me-name'), button: $('#sign-out'), error: $('#sign-out-error') },
  user,
);
startApp();
