// The panel of an interrupted job: each pending tool call with its input, and a
// decision for each (approve, edit the input as JSON, reject with a message).
import { el, pretty } from './util.js';

const DECISION_LABELS = { approve: 'Approve', edit: 'Edit', reject: 'Reject' };

// Fill `box` for `interrupt`; `send(decisions)` resolves true once they were accepted.
export function showInterruptPanel(box, interrupt, send) {
  box.dataset.interruptId = interrupt.interrupt_id;
  const chosen = new Map();
  const requests = interrupt.requests || [];
  const button = el('button', { type: 'button', class: 'primary', disabled: true,
    text: requests.length === 1 ? 'Send decision' : `Send ${requests.length} decisions`,
    onclick: async () => {
      const decisions = readDecisions(requests, chosen);
      if (!decisions) return;
      button.disabled = true;
      if (!(await send(decisions))) button.disabled = false;
    } });
  const cards = requests.map((request, index) => requestCard(request, (choice) => {
    chosen.set(index, choice);
    button.disabled = requests.some((_, i) => !chosen.has(i));
  }));
  box.replaceChildren(
    el('h3', {}, 'Waiting for a decision',
      el('span', { class: 'interrupt-meta', text: ` · ${interrupt.agent || 'agent'} · ` }),
      el('code', { class: 'interrupt-meta', text: interrupt.interrupt_id })),
    ...cards, el('div', { class: 'interrupt-actions' }, button));
  box.hidden = false;
}

function requestCard(request, choose) {
  const allowed = request.allowed_decisions && request.allowed_decisions.length
    ? request.allowed_decisions : ['approve', 'edit', 'reject'];
  const editor = el('textarea', { class: 'mono', rows: '8', spellcheck: 'false',
    'aria-label': `Edited input of ${request.tool}` });
  editor.value = pretty(request.input || {});
  const problem = el('p', { class: 'problem', hidden: true });
  const message = el('input', { type: 'text', placeholder: 'why not (the agent is told)',
    'aria-label': `Reason to reject ${request.tool}` });
  const editBox = el('div', { class: 'decision-extra', hidden: true }, editor, problem);
  const rejectBox = el('div', { class: 'decision-extra', hidden: true }, message);
  const buttons = allowed.map((type) => el('button', { type: 'button', class: `decision ${type}`,
    data: { decision: type }, 'aria-pressed': 'false', text: DECISION_LABELS[type] || type,
    onclick: () => {
      for (const b of buttons) b.setAttribute('aria-pressed', String(b.dataset.decision === type));
      editBox.hidden = type !== 'edit';
      rejectBox.hidden = type !== 'reject';
      choose({ type, editor, message, problem });
    } }));
  return el('div', { class: 'request', data: { callId: request.call_id } },
    el('div', { class: 'request-head' }, el('code', { class: 'tool-name', text: request.tool }),
      el('span', { class: 'muted', text: request.call_id ? ` ${request.call_id}` : '' })),
    el('pre', { class: 'mono input', text: pretty(request.input || {}) }),
    el('div', { class: 'decisions' }, buttons), editBox, rejectBox);
}

// The decisions to send, one per request in order; null (the problem shown) when an
// edited input is not a JSON object.
function readDecisions(requests, chosen) {
  const decisions = [];
  for (let i = 0; i < requests.length; i += 1) {
    const choice = chosen.get(i);
    if (choice.type === 'edit') {
      try {
        const input = JSON.parse(choice.editor.value);
        if (!input || typeof input !== 'object' || Array.isArray(input)) throw new Error('the input must be a JSON object');
        choice.problem.hidden = true;
        decisions.push({ type: 'edit', input });
      } catch (err) {
        choice.problem.textContent = `Not valid: ${err.message}`;
        choice.problem.hidden = false;
        return null;
      }
    } else if (choice.type === 'reject') {
      const text = choice.message.value.trim();
      decisions.push(text ? { type: 'reject', message: text } : { type: 'reject' });
    } else {
      decisions.push({ type: choice.type });
    }
  }
  return decisions;
}
