// One job: its record (polled), its stream (followed, resumed after a drop), the
// todos, files and result, and the interrupt panel.
import { api, ApiError, authorizedFetch, BASE, jobPath, showError } from './api.js';
import { showInterruptPanel } from './interrupt.js';
import { sseFrames } from './sse.js';
import { CANCELLABLE, FINISHED, POLL_MS, RETRYABLE, $, clock, el, parseTime, pretty, span, took } from './util.js';
import { AgentView, fileText, ToolView } from './views.js';

export class JobView {
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
    showInterruptPanel(box, interrupt, (decisions) => this.resume(interrupt, decisions));
  }

  async resume(interrupt, decisions) {
    let sent = false;
    try {
      await api('POST', `${jobPath(this.id)}/resume`, { interrupt_id: interrupt.interrupt_id, decisions });
      sent = true;
      this.answered.add(interrupt.interrupt_id);
      this.streamInterrupt = null;
      (interrupt.requests || []).forEach((request, i) => this.tools.get(request.call_id)?.decided(decisions[i].type));
      this.renderInterrupt();
    } catch (err) {
      showError(err);
    }
    this.refresh();
    return sent;
  }


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

