// What one job's stream becomes on the page: a card per agent holding its tokens
// and its tool calls, each call paired with its result.
import { $, colourOf, el, pretty } from './util.js';

export function fileText(value) {
  if (typeof value === 'string') return value;
  if (value && Array.isArray(value.content)) return value.content.join('\n');
  if (value && typeof value.content === 'string') return value.content;
  return pretty(value);
}

export class AgentView {
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

export class ToolView {
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
