// The agent-executor console: plain JavaScript modules, no dependencies, no build
// step. Everything it shows comes from the service's own API (docs/api.md); every
// value from a job is put on the page as text, never as HTML.
import { api, jobPath, setConnection, showError, TOKEN_KEY } from './api.js';
import { JobView } from './job.js';
import { $, ago, badge, clock, el, parseTime, POLL_MS, span, STATUSES, took } from './util.js';

const PAGE_SIZE = Math.min(500, Math.max(1, Number(new URLSearchParams(location.search).get('limit')) || 25));

let current = null; // the JobView shown

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
