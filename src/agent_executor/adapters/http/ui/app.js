// The agent-executor console: plain JavaScript, no dependencies, no build step.
// Everything it shows comes from the service's own API (docs/api.md); every value
// from a job is put on the page as text, never as HTML.
'use strict';

const BASE = new URL('.', location.href); // /ui -> the service's root
const TOKEN_KEY = 'agent-executor.token';
const STATUSES = ['pending', 'running', 'interrupted', 'completed', 'failed', 'cancelled'];
const FINISHED = new Set(['completed', 'failed', 'cancelled']);
const CANCELLABLE = new Set(['pending', 'running', 'interrupted']);
const RETRYABLE = new Set(['failed', 'cancelled']);
const POLL_MS = 2000;
const PAGE_SIZE = Math.min(500, Math.max(1, Number(new URLSearchParams(location.search).get('limit')) || 25));
const DECISION_LABELS = { approve: 'Approve', edit: 'Edit', reject: 'Reject' };

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key === 'data') Object.assign(node.dataset, value);
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null && child !== false) node.append(child);
  }
  return node;
}

const pretty = (value) => JSON.stringify(value, null, 2);

// ---------------------------------------------------------------- time

function parseTime(text) { return text ? new Date(text) : null; }

function clock(date) {
  if (!date) return '—';
  const sameDay = date.toDateString() === new Date().toDateString();
  return sameDay ? date.toLocaleTimeString() : date.toLocaleString();
}

function ago(date) {
  if (!date) return '—';
  const s = Math.max(0, Math.round((Date.now() - date.getTime()) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return date.toLocaleDateString();
}

function span(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  const two = (n) => String(n).padStart(2, '0');
  if (m < 60) return `${m}m ${two(Math.floor(s - m * 60))}s`;
  return `${Math.floor(m / 60)}h ${two(m % 60)}m`;
}

function took(job) {
  const created = parseTime(job.created_at);
  if (!created) return null;
  const end = parseTime(job.finished_at) || (FINISHED.has(job.status) ? parseTime(job.updated_at) : null);
  return (end ? end.getTime() : Date.now()) - created.getTime();
}

// ---------------------------------------------------------------- errors and status

class ApiError extends Error {
  constructor(what, status, body) {
    super(body && body.error ? body.error : `HTTP ${status}`);
    this.what = what;
    this.status = status;
    this.details = body && Array.isArray(body.details) ? body.details : [];
  }
}

function showError(err) {
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

function setConnection(state, text) {
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
async function authorizedFetch(what, url, init) {
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

async function api(method, path, body) {
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

const jobPath = (id) => `jobs/${encodeURIComponent(id)}`;

// ---------------------------------------------------------------- badges

function badge(status) {
  return el('span', { class: 'badge', data: { status }, text: status });
}

function colourOf(name) {
  let h = 0;
  for (const c of name) h = (h * 31 + c.codePointAt(0)) % 360;
  return `hsl(${h} 55% 42%)`;
}

// ---------------------------------------------------------------- the job list

const list = { statuses: new Set(), source: '', cursors: [null], page: 0, next: null,
  timer: null, busy: false };

function buildFilters() {
  const box = $('status-filter');
  for (const status of STATUSES) {
    box.append(el('button', { type: 'button', class: 'chip', data: { status },
      'aria-pressed': 'false', text: status,
      onclick: (event) => {
        const on = !list.statuses.has(status);
        if (on) list.statuses.add(status); else list.statuses.delete(status);
        event.currentTarget.setAttribute('aria-pressed', String(on));
        resetPaging();
      } }));
  }
  $('source-filter').addEventListener('change', (event) => {
    list.source = event.target.value;
    resetPaging();
  });
  $('page-older').addEventListener('click', () => {
    if (!list.next) return;
    list.cursors[list.page + 1] = list.next;
    list.page += 1;
    refreshList();
  });
  $('page-newer').addEventListener('click', () => {
    if (list.page === 0) return;
    list.page -= 1;
    refreshList();
  });
}

function resetPaging() {
  list.cursors = [null];
  list.page = 0;
  refreshList();
}

async function refreshList() {
  clearTimeout(list.timer);
  const query = new URLSearchParams();
  for (const status of list.statuses) query.append('status', status);
  if (list.source) query.set('source', list.source);
  query.set('limit', String(PAGE_SIZE));
  const cursor = list.cursors[list.page];
  if (cursor) query.set('cursor', cursor);
  try {
    const page = await api('GET', `jobs?${query}`);
    renderList(page);
    setConnection('ok', `live · ${new Date().toLocaleTimeString()}`);
  } catch (err) {
    if (err.status === 0) setConnection('down', 'service unreachable, retrying');
    else showError(err);
  } finally {
    list.timer = setTimeout(refreshList, document.hidden ? POLL_MS * 5 : POLL_MS);
  }
}

function renderList(page) {
  list.next = page.next_cursor;
  const rows = page.jobs.map((job) => {
    const row = el('tr', { data: { jobId: job.job_id, status: job.status },
      class: current && current.id === job.job_id ? 'selected' : null,
      onclick: () => { location.hash = `job=${encodeURIComponent(job.job_id)}`; } },
    el('td', {}, badge(job.status)),
    el('td', { class: 'job-id' }, el('a', { href: `#job=${encodeURIComponent(job.job_id)}`,
      text: job.job_id, title: job.job_id }),
      job.run > 1 ? el('span', { class: 'muted', text: ` run ${job.run}` }) : null),
    el('td', { text: job.source }),
    el('td', { title: clock(parseTime(job.created_at)), text: ago(parseTime(job.created_at)) }),
    el('td', { class: 'num', text: span(took(job)) }));
    return row;
  });
  $('job-rows').replaceChildren(...rows);
  $('jobs-empty').hidden = rows.length > 0;
  $('page-label').textContent = `page ${list.page + 1}`;
  $('page-newer').disabled = list.page === 0;
  $('page-older').disabled = !list.next;
}

// ---------------------------------------------------------------- server-sent events over fetch

async function* sseFrames(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, '\n');
      let cut;
      while ((cut = buffer.indexOf('\n\n')) >= 0) {
        const frame = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const parsed = parseFrame(frame);
        if (parsed) yield parsed;
      }
    }
  } finally {
    reader.releaseLock();
  }
}

function parseFrame(text) {
  const frame = { event: 'message', data: [], id: null, retry: null };
  for (const line of text.split('\n')) {
    if (!line || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') frame.event = value;
    else if (field === 'data') frame.data.push(value);
    else if (field === 'id') frame.id = value;
    else if (field === 'retry' && /^\d+$/.test(value)) frame.retry = Number(value);
  }
  if (!frame.data.length && frame.retry === null) return null;
  return frame;
}

// ---------------------------------------------------------------- one job

let current = null;

class JobView {
  constructor(id) {
    this.id = id;
    this.record = null;
    this.lastSeq = 0;
    this.endedRun = 0; // the run whose `end` the stream delivered last
    this.streamRun = 1;
    this.following = false;
    this.closed = false;
    this.abort = new AbortController();
    this.timer = null;
    this.retryMs = 2000;
    this.agents = new Map();
    this.tools = new Map();
    this.files = new Map();
    this.selectedFile = null;
    this.todos = [];
    this.streamInterrupt = null;
    this.answered = new Set();
    this.decisions = new Map();
    this.endData = null;
    this.usage = null;
    $('job-none').hidden = true;
    $('job').hidden = false;
    $('job-title').textContent = id;
    $('job-facts').replaceChildren();
    $('agents').replaceChildren(el('p', { class: 'empty', text: 'No events yet.' }));
    $('todos').replaceChildren(el('li', { class: 'empty', text: 'none' }));
    $('files').replaceChildren(el('p', { class: 'empty', text: 'none' }));
    $('outcome').hidden = true;
    $('interrupt').hidden = true;
    $('btn-cancel').hidden = true;
    $('btn-retry').hidden = true;
    this.setStreamState('connecting');
    for (const row of $('job-rows').children) row.classList.toggle('selected', row.dataset.jobId === id);
    this.refresh();
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    this.abort.abort();
  }

  async refresh() {
    clearTimeout(this.timer);
    if (this.closed) return;
    try {
      this.record = await api('GET', jobPath(this.id));
      if (this.closed) return;
      // A retried run may pause again before its stream says anything.
      if (this.endedRun && this.endedRun >= this.streamRun && this.record.run > this.endedRun) {
        this.newRun();
      }
      this.render();
      // Each run's stream closes with its `end`; a retry is a new run with a new number.
      if (!this.following && (this.endedRun === 0 || this.record.run > this.endedRun)) {
        this.follow();
      }
    } catch (err) {
      if (this.closed) return;
      if (err.status === 404) {
        $('job-title').textContent = `${this.id} (unknown)`;
        showError(err);
        return;
      }
      if (err.status !== 0) showError(err);
    }
    this.timer = setTimeout(() => this.refresh(), POLL_MS);
  }

  // Follow the stream; after a drop, resume after the last seq (Last-Event-ID).
  async follow() {
    this.following = true;
    try {
      while (!this.closed) {
        let gotEnd = false;
        try {
          this.setStreamState(this.lastSeq ? 'reconnecting' : 'connecting');
          const headers = { Accept: 'text/event-stream' };
          if (this.lastSeq) headers['Last-Event-ID'] = String(this.lastSeq);
          const what = `GET /${jobPath(this.id)}/events`;
          const response = await authorizedFetch(what, new URL(`${jobPath(this.id)}/events`, BASE),
            { headers, signal: this.abort.signal, cache: 'no-store' });
          if (!response.ok) {
            throw new ApiError(what, response.status, await response.json().catch(() => null));
          }
          this.setStreamState('live');
          for await (const frame of sseFrames(response.body)) {
            if (frame.retry !== null) this.retryMs = frame.retry;
            if (!frame.data.length) continue;
            const payload = JSON.parse(frame.data.join('\n'));
            if (frame.event === 'error') {
              this.setStreamState('reconnecting');
              continue;
            }
            if (this.handle(payload)) gotEnd = true;
          }
        } catch (err) {
          if (this.closed || err.name === 'AbortError') return;
          if (err instanceof ApiError && err.status !== 0 && err.status !== 503) {
            showError(err);
            this.setStreamState('closed');
            return;
          }
        }
        if (gotEnd) {
          this.setStreamState('ended');
          return; // a retry starts a new run; refresh() notices and follows again
        }
        await new Promise((resolve) => { setTimeout(resolve, this.retryMs); });
      }
    } finally {
      this.following = false;
    }
  }

  setStreamState(state) {
    const node = $('stream-state');
    node.dataset.state = state;
    node.textContent = state === 'live' || state === 'ended' ? `${state} · seq ${this.lastSeq}` : state;
  }

  // Returns true on the run's `end`.
  handle(event) {
    if (typeof event.seq !== 'number' || event.seq <= this.lastSeq) return false;
    this.lastSeq = event.seq;
    if (this.endedRun && this.endedRun >= this.streamRun) this.newRun();
    const data = event.data || {};
    const type = event.event_type;
    if (type !== 'on_interrupt' && type !== 'end' && this.streamInterrupt) {
      this.answered.add(this.streamInterrupt.interrupt_id);
      this.streamInterrupt = null;
      this.renderInterrupt();
    }
    if (type === 'on_llm_stream') this.agent(data.agent).text(data.content || '');
    else if (type === 'on_tool_start') this.toolStart(data);
    else if (type === 'on_tool_end') this.toolEnd(data);
    else if (type === 'on_state_update') this.stateUpdate(data.update || {});
    else if (type === 'on_interrupt') this.interrupted(data);
    else if (type === 'end') this.ended(data);
    const node = $('stream-state');
    if (node.dataset.state === 'live') node.textContent = `live · seq ${this.lastSeq}`;
    return type === 'end';
  }

  newRun() {
    this.streamRun = this.endedRun + 1;
    this.agents.clear();
    this.tools.clear();
    this.answered.clear(); // a run that pauses again may reuse the interrupt's id
    this.streamInterrupt = null;
    $('agents').append(el('div', { class: 'run-divider', text: `run ${this.streamRun}` }));
  }

  agent(name) {
    const key = name || 'agent';
    let view = this.agents.get(key);
    if (!view) {
      view = new AgentView(key);
      const box = $('agents');
      box.querySelector(':scope > .empty')?.remove();
      box.append(view.node);
      this.agents.set(key, view);
    }
    return view;
  }

  toolStart(data) {
    const known = data.call_id ? this.tools.get(data.call_id) : null;
    if (known) { // announced before a pause; now it runs, perhaps with edited input
      known.restart(data);
      return;
    }
    const block = new ToolView(data);
    this.agent(data.agent).tool(block);
    if (data.call_id) this.tools.set(data.call_id, block);
  }

  toolEnd(data) {
    let block = data.call_id ? this.tools.get(data.call_id) : null;
    if (!block) {
      block = new ToolView(data);
      this.agent(data.agent).tool(block);
    }
    block.finish(data);
  }

  stateUpdate(update) {
    if (Array.isArray(update.todos)) {
      this.todos = update.todos;
      this.renderTodos();
    }
    if (update.files && typeof update.files === 'object') this.mergeFiles(update.files);
    // A call's tool message closes it too (a rejected call never gets on_tool_end).
    for (const message of Array.isArray(update.messages) ? update.messages : []) {
      const block = message && message.role === 'tool' ? this.tools.get(message.tool_call_id) : null;
      if (block && !block.done) {
        block.finish({ output: typeof message.content === 'string' ? message.content : pretty(message.content),
          status: message.status === 'error' ? 'error' : 'success' });
      }
    }
  }

  mergeFiles(files) {
    for (const [path, value] of Object.entries(files)) {
      if (value === null) this.files.delete(path);
      else this.files.set(path, fileText(value));
    }
    this.renderFiles();
  }

  interrupted(data) {
    if (this.answered.has(data.interrupt_id)) return;
    this.streamInterrupt = data;
    for (const request of data.requests || []) {
      const block = this.tools.get(request.call_id);
      if (block) block.waiting();
    }
    this.renderInterrupt();
  }

  ended(data) {
    this.endedRun = data.run || this.streamRun;
    this.endData = data;
    if (data.usage) this.usage = data.usage;
    if (data.result && data.result.files) this.mergeFiles(data.result.files);
    for (const block of this.tools.values()) block.unfinished(data.status);
    this.refresh();
  }

  // ------------------------------------------------------------ rendering the record

  render() {
    const job = this.record;
    const status = $('job-status');
    status.dataset.status = job.status;
    status.textContent = job.status;
    $('btn-cancel').hidden = !CANCELLABLE.has(job.status);
    $('btn-retry').hidden = !RETRYABLE.has(job.status);
    const usage = job.usage || this.usage;
    const facts = [
      ['attempts', String(job.attempts)], ['run', String(job.run)], ['source', job.source],
      ['created', clock(parseTime(job.created_at))],
      ['finished', clock(parseTime(job.finished_at))],
      [FINISHED.has(job.status) ? 'took' : 'age', span(took(job))],
      ['updated', clock(parseTime(job.updated_at))], ['trace', job.trace_id || '—'],
    ];
    if (usage) {
      facts.push(['model calls', String(usage.model_calls ?? '—')],
        ['tokens', `${usage.total_tokens ?? '—'} (in ${usage.input_tokens ?? '—'} / out ${usage.output_tokens ?? '—'})`]);
    }
    $('job-facts').replaceChildren(...facts.map(([name, value]) =>
      el('div', { class: 'fact', data: { fact: name } }, el('dt', { text: name }), el('dd', { text: value, title: value }))));
    if (job.result && job.result.files) this.mergeFiles(job.result.files);
    this.renderOutcome();
    this.renderInterrupt();
  }

  renderOutcome() {
    const job = this.record;
    const box = $('outcome');
    const parts = [];
    if (job.status === 'completed' && job.result) {
      parts.push(el('h3', { text: 'Output' }),
        el('div', { class: 'output', text: job.result.output || '(no text)' }));
    } else if (job.status === 'failed' && job.error) {
      parts.push(el('h3', { text: 'Error' }),
        el('div', { class: 'error-type' }, el('code', { text: job.error.type }),
          el('span', { class: 'muted', text: job.error.retryable ? ' retryable' : ' not retryable' })),
        el('div', { class: 'output', text: job.error.message }));
    } else if (job.status === 'cancelled') {
      parts.push(el('h3', { text: 'Cancelled' }),
        el('div', { class: 'output', text: job.reason || '(no reason given)' }));
    }
    box.dataset.status = job.status;
    box.replaceChildren(...parts);
    box.hidden = parts.length === 0;
  }

  pendingInterrupt() {
    const job = this.record;
    if (job && job.status === 'interrupted' && job.interrupt) {
      return this.answered.has(job.interrupt.interrupt_id) ? null : job.interrupt;
    }
    if (job && FINISHED.has(job.status)) return null;
    return this.streamInterrupt;
  }

  renderInterrupt() {
    const box = $('interrupt');
    const interrupt = this.pendingInterrupt();
    if (!interrupt) {
      box.hidden = true;
      box.replaceChildren();
      delete box.dataset.interruptId;
      return;
    }
    if (box.dataset.interruptId === interrupt.interrupt_id && !box.hidden) return;
    box.dataset.interruptId = interrupt.interrupt_id;
    this.decisions = new Map();
    const requests = interrupt.requests || [];
    const send = el('button', { type: 'button', class: 'primary', disabled: true,
      text: requests.length === 1 ? 'Send decision' : `Send ${requests.length} decisions`,
      onclick: () => this.sendDecisions(interrupt, requests, send) });
    const cards = requests.map((request, index) => this.requestCard(request, index, () => {
      send.disabled = requests.some((_, i) => !this.decisions.has(i));
    }));
    box.replaceChildren(
      el('h3', {}, 'Waiting for a decision',
        el('span', { class: 'interrupt-meta', text: ` · ${interrupt.agent || 'agent'} · ` }),
        el('code', { class: 'interrupt-meta', text: interrupt.interrupt_id })),
      ...cards, el('div', { class: 'interrupt-actions' }, send));
    box.hidden = false;
  }

  requestCard(request, index, changed) {
    const allowed = request.allowed_decisions && request.allowed_decisions.length
      ? request.allowed_decisions : ['approve', 'edit', 'reject'];
    const editor = el('textarea', { class: 'mono', rows: '8', spellcheck: 'false',
      'aria-label': `Edited input of ${request.tool}` });
    editor.value = pretty(request.input || {});
    const editProblem = el('p', { class: 'problem', hidden: true });
    const message = el('input', { type: 'text', placeholder: 'why not (the agent is told)',
      'aria-label': `Reason to reject ${request.tool}` });
    const editBox = el('div', { class: 'decision-extra', hidden: true }, editor, editProblem);
    const rejectBox = el('div', { class: 'decision-extra', hidden: true }, message);
    const buttons = [];
    const choose = (type) => {
      for (const button of buttons) button.setAttribute('aria-pressed', String(button.dataset.decision === type));
      editBox.hidden = type !== 'edit';
      rejectBox.hidden = type !== 'reject';
      this.decisions.set(index, { type, editor, message, problem: editProblem });
      changed();
    };
    for (const type of allowed) {
      buttons.push(el('button', { type: 'button', class: `decision ${type}`, data: { decision: type },
        'aria-pressed': 'false', text: DECISION_LABELS[type] || type, onclick: () => choose(type) }));
    }
    return el('div', { class: 'request', data: { callId: request.call_id } },
      el('div', { class: 'request-head' }, el('code', { class: 'tool-name', text: request.tool }),
        el('span', { class: 'muted', text: request.call_id ? ` ${request.call_id}` : '' })),
      el('pre', { class: 'mono input', text: pretty(request.input || {}) }),
      el('div', { class: 'decisions' }, buttons), editBox, rejectBox);
  }

  async sendDecisions(interrupt, requests, button) {
    const decisions = [];
    for (let i = 0; i < requests.length; i += 1) {
      const chosen = this.decisions.get(i);
      if (chosen.type === 'edit') {
        try {
          const input = JSON.parse(chosen.editor.value);
          if (!input || typeof input !== 'object' || Array.isArray(input)) throw new Error('the input must be a JSON object');
          chosen.problem.hidden = true;
          decisions.push({ type: 'edit', input });
        } catch (err) {
          chosen.problem.textContent = `Not valid: ${err.message}`;
          chosen.problem.hidden = false;
          return;
        }
      } else if (chosen.type === 'reject') {
        const message = chosen.message.value.trim();
        decisions.push(message ? { type: 'reject', message } : { type: 'reject' });
      } else {
        decisions.push({ type: chosen.type });
      }
    }
    button.disabled = true;
    try {
      await api('POST', `${jobPath(this.id)}/resume`, { interrupt_id: interrupt.interrupt_id, decisions });
      this.answered.add(interrupt.interrupt_id);
      this.streamInterrupt = null;
      requests.forEach((request, i) => this.tools.get(request.call_id)?.decided(decisions[i].type));
      this.renderInterrupt();
    } catch (err) {
      showError(err);
      button.disabled = false;
    }
    this.refresh();
  }

  // ------------------------------------------------------------ todos and files

  renderTodos() {
    const icons = { completed: '✓', in_progress: '◐', pending: '○' };
    const items = this.todos.map((todo) => el('li', { data: { status: todo.status || 'pending' } },
      el('span', { class: 'todo-icon', 'aria-hidden': 'true', text: icons[todo.status] || '○' }),
      el('span', { text: todo.content || '' })));
    $('todos').replaceChildren(...(items.length ? items : [el('li', { class: 'empty', text: 'none' })]));
  }

  renderFiles() {
    const box = $('files');
    if (!this.files.size) {
      box.replaceChildren(el('p', { class: 'empty', text: 'none' }));
      return;
    }
    if (!this.files.has(this.selectedFile)) this.selectedFile = this.files.keys().next().value;
    const tabs = [...this.files.keys()].map((path) => el('button', { type: 'button',
      class: 'file-tab', 'aria-pressed': String(path === this.selectedFile), data: { path }, text: path,
      onclick: () => { this.selectedFile = path; this.renderFiles(); } }));
    box.replaceChildren(el('div', { class: 'file-tabs' }, tabs),
      el('pre', { class: 'mono file-content', data: { path: this.selectedFile },
        text: this.files.get(this.selectedFile) }));
  }
}

function fileText(value) {
  if (typeof value === 'string') return value;
  if (value && Array.isArray(value.content)) return value.content.join('\n');
  if (value && typeof value.content === 'string') return value.content;
  return pretty(value);
}

class AgentView {
  constructor(name) {
    this.body = el('div', { class: 'agent-body mono' });
    this.node = el('section', { class: 'agent', data: { agent: name } },
      el('header', {}, el('span', { class: 'dot' }), el('span', { class: 'agent-name', text: name })),
      this.body);
    this.node.querySelector('.dot').style.background = colourOf(name);
    this.segment = null;
  }

  text(content) {
    if (!this.segment) {
      this.segment = document.createTextNode('');
      this.body.append(el('div', { class: 'tokens' }, this.segment));
    }
    this.segment.appendData(content);
    this.scroll();
  }

  tool(block) {
    this.segment = null;
    this.body.append(block.node);
    this.scroll();
  }

  scroll() {
    const box = $('agents');
    if (box.scrollHeight - box.scrollTop - box.clientHeight < 120) box.scrollTop = box.scrollHeight;
  }
}

class ToolView {
  constructor(data) {
    this.done = false;
    this.state = el('span', { class: 'tool-state', data: { state: 'running' }, text: 'running' });
    this.preview = el('span', { class: 'tool-preview' });
    this.input = el('pre', { class: 'mono tool-input' });
    this.output = el('pre', { class: 'mono tool-output', text: '…' });
    this.node = el('details', { class: 'tool', data: { callId: data.call_id || '', tool: data.tool || '' } },
      el('summary', {}, el('code', { class: 'tool-name', text: data.tool || 'tool' }), this.preview, this.state),
      el('div', { class: 'tool-io' }, el('div', { class: 'label', text: 'input' }), this.input,
        el('div', { class: 'label', text: 'output' }), this.output));
    this.showInput(data.input);
  }

  showInput(input) {
    this.preview.textContent = preview(input);
    this.input.textContent = input === undefined ? '—' : pretty(input);
  }

  restart(data) {
    if (data.input !== undefined) this.showInput(data.input);
    if (!this.done) this.setState('running', 'running');
  }

  decided(type) {
    if (!this.done) this.setState('decided', { approve: 'approved', edit: 'edited', reject: 'rejected' }[type] || type);
  }

  setState(state, text) {
    this.state.dataset.state = state;
    this.state.textContent = text;
  }

  finish(data) {
    this.done = true;
    this.output.textContent = data.output ?? '';
    this.setState(data.status === 'error' ? 'error' : 'success', data.status || 'done');
  }

  waiting() { if (!this.done) this.setState('waiting', 'waiting for a decision'); }

  unfinished(status) {
    if (!this.done) {
      this.setState('stopped', status === 'completed' ? 'no result' : status);
    }
  }
}

function preview(input) {
  if (!input || typeof input !== 'object') return '';
  const first = ['file_path', 'subagent_type', 'path', 'pattern', 'query', 'description']
    .map((key) => input[key]).find((value) => typeof value === 'string');
  const text = first ?? Object.values(input).find((value) => typeof value === 'string') ?? '';
  return text.length > 70 ? `${text.slice(0, 70)}…` : text;
}

// ---------------------------------------------------------------- steering buttons

async function steer(action) {
  if (!current) return;
  const button = $(`btn-${action}`);
  button.disabled = true;
  try {
    await api('POST', `${jobPath(current.id)}/${action}`, {});
  } catch (err) {
    showError(err);
  } finally {
    button.disabled = false;
  }
  if (current) current.refresh();
  refreshList();
}

// ---------------------------------------------------------------- start

function route() {
  const match = /^#job=(.+)$/.exec(location.hash);
  const id = match ? decodeURIComponent(match[1]) : null;
  if (current && current.id === id) return;
  if (current) current.close();
  current = id ? new JobView(id) : null;
  if (!current) {
    $('job').hidden = true;
    $('job-none').hidden = false;
  }
}

function start() {
  buildFilters();
  $('btn-cancel').addEventListener('click', () => steer('cancel'));
  $('btn-retry').addEventListener('click', () => steer('retry'));
  $('forget-token').hidden = !sessionStorage.getItem(TOKEN_KEY);
  $('forget-token').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    location.reload();
  });
  window.addEventListener('hashchange', route);
  document.addEventListener('visibilitychange', () => { if (!document.hidden) refreshList(); });
  route();
  refreshList();
}

start();
