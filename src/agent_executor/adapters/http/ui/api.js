// The service's API from the page: the bearer token (asked for on a 401, kept in
// sessionStorage), JSON calls, and how their errors are shown.
import { $, el } from './util.js';

export const BASE = new URL('.', location.href); // /ui -> the service's root
export const TOKEN_KEY = 'agent-executor.token';

// ---------------------------------------------------------------- errors and status

export class ApiError extends Error {
  constructor(what, status, body) {
    super(body && body.error ? body.error : `HTTP ${status}`);
    this.what = what;
    this.status = status;
    this.details = body && Array.isArray(body.details) ? body.details : [];
  }
}

export function showError(err) {
  const box = $('errors');
  const title = err instanceof ApiError
    ? `${err.what} → ${err.status || 'no answer'}: ${err.message}` : String(err.message || err);
  for (const old of box.children) if (old.dataset.title === title) old.remove();
  const item = el('div', { class: 'error', data: { title } },
    el('strong', { text: title }),
    err.details && err.details.length ? el('ul', {}, err.details.map((d) => el('li', { text: d }))) : null,
    el('button', { class: 'ghost', type: 'button', 'aria-label': 'Dismiss', text: '×',
      onclick: () => item.remove() }));
  box.append(item);
  while (box.children.length > 4) box.firstElementChild.remove();
}

export function setConnection(state, text) {
  const conn = $('conn');
  conn.dataset.state = state;
  conn.textContent = text;
}

// ---------------------------------------------------------------- the API, with tokens

let tokenPrompt = null;

function askForToken(message) {
  if (!tokenPrompt) {
    tokenPrompt = new Promise((resolve) => {
      const dialog = $('token-dialog');
      $('token-message').textContent = message;
      $('token-input').value = '';
      $('token-form').onsubmit = (event) => {
        event.preventDefault();
        const value = $('token-input').value.trim();
        if (!value) return;
        sessionStorage.setItem(TOKEN_KEY, value);
        $('forget-token').hidden = false;
        dialog.close();
        tokenPrompt = null;
        resolve();
      };
      dialog.addEventListener('cancel', (event) => event.preventDefault(), { once: true });
      if (!dialog.open) dialog.showModal();
      $('token-input').focus();
    });
  }
  return tokenPrompt;
}

function authHeaders(extra, token) {
  return token ? { ...extra, Authorization: `Bearer ${token}` } : { ...extra };
}

// fetch with the token; a 401 asks for a token (once for every waiting caller) and tries again.
export async function authorizedFetch(what, url, init) {
  for (;;) {
    const sent = sessionStorage.getItem(TOKEN_KEY);
    let response;
    try {
      response = await fetch(url, { ...init, headers: authHeaders(init.headers || {}, sent) });
    } catch (err) {
      if (err.name === 'AbortError') throw err;
      throw new ApiError(what, 0, { error: 'the service cannot be reached', details: [] });
    }
    if (response.status !== 401) return response;
    const stored = sessionStorage.getItem(TOKEN_KEY);
    if (stored && stored !== sent) continue; // a new token was entered meanwhile
    if (stored) sessionStorage.removeItem(TOKEN_KEY);
    await askForToken(sent ? 'That token was not accepted. Enter a valid API token.'
      : 'This service needs a bearer token (API_TOKENS).');
  }
}

export async function api(method, path, body) {
  const what = `${method} /${path.split('?')[0]}`;
  const init = { method, headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await authorizedFetch(what, new URL(path, BASE), init);
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(what, response.status, data);
  return data;
}

export const jobPath = (id) => `jobs/${encodeURIComponent(id)}`;
