// Helpers every part of the console shares: DOM building, times, statuses.

export const STATUSES = ['pending', 'running', 'interrupted', 'completed', 'failed', 'cancelled'];
export const FINISHED = new Set(['completed', 'failed', 'cancelled']);
export const CANCELLABLE = new Set(['pending', 'running', 'interrupted']);
export const RETRYABLE = new Set(['failed', 'cancelled']);
export const POLL_MS = 2000;

export const $ = (id) => document.getElementById(id);

export function el(tag, props = {}, ...children) {
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

export const pretty = (value) => JSON.stringify(value, null, 2);

// ---------------------------------------------------------------- time

export function parseTime(text) { return text ? new Date(text) : null; }

export function clock(date) {
  if (!date) return '—';
  const sameDay = date.toDateString() === new Date().toDateString();
  return sameDay ? date.toLocaleTimeString() : date.toLocaleString();
}

export function ago(date) {
  if (!date) return '—';
  const s = Math.max(0, Math.round((Date.now() - date.getTime()) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return date.toLocaleDateString();
}

export function span(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  const two = (n) => String(n).padStart(2, '0');
  if (m < 60) return `${m}m ${two(Math.floor(s - m * 60))}s`;
  return `${Math.floor(m / 60)}h ${two(m % 60)}m`;
}

export function took(job) {
  const created = parseTime(job.created_at);
  if (!created) return null;
  const end = parseTime(job.finished_at) || (FINISHED.has(job.status) ? parseTime(job.updated_at) : null);
  return (end ? end.getTime() : Date.now()) - created.getTime();
}


// ---------------------------------------------------------------- badges

export function badge(status) {
  return el('span', { class: 'badge', data: { status }, text: status });
}

export function colourOf(name) {
  let h = 0;
  for (const c of name) h = (h * 31 + c.codePointAt(0)) % 360;
  return `hsl(${h} 55% 42%)`;
}
