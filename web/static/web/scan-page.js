// One scan's page: live progress over the WebSocket (SSE after repeated failures to connect),
// resumed from the latest snapshot after a reload or a dropped connection; Cancel; then results.
import { call, el, showError } from './api.js';
import { showResults } from './results.js';

const page = JSON.parse(document.getElementById('page-data').textContent);
const TERMINAL = ['completed', 'failed', 'cancelled'];
const WS_FAILURES_BEFORE_SSE = 2;
const $ = (id) => document.getElementById(id);
const banner = $('connection');
const cancelButton = $('cancel');

let lastSeq = -1;
let finished = false;
let socketFailures = 0;
let retryDelay = 1000;

function setConnection(text) {
  banner.textContent = text;
  banner.hidden = !text;
}

function cacheBadge(cache) {
  const badge = $('cache-badge');
  if (!cache || cache.available === false) {
    badge.textContent = 'cache unavailable: running uncached';
    badge.dataset.level = 'poor';
  } else if (cache.hit_rate === null || cache.hit_rate === undefined) {
    badge.textContent = 'cache: no lookups yet';
    delete badge.dataset.level;
  } else {
    badge.textContent = `cache hit rate ${cache.hit_rate.toFixed(1)}% (${cache.hits} hits, ${cache.misses} misses)`;
    if (cache.hit_rate >= 80) badge.dataset.level = 'good';
    else delete badge.dataset.level;
  }
}

// Draws a snapshot unless an older one than what is shown (messages can cross on reconnects).
function render(snap) {
  if (snap.seq < lastSeq) return;
  lastSeq = snap.seq;
  const pct = snap.overall_progress;
  $('overall-bar').setAttribute('aria-valuenow', String(pct));
  $('overall-bar').querySelector('.fill').style.width = `${pct}%`;
  $('overall-pct').textContent = `${pct.toFixed(1)}%`;
  $('status').textContent = snap.status;
  $('status').dataset.status = snap.status;
  $('overall-eta').textContent = TERMINAL.includes(snap.status) ? '—' : snap.overall_eta_formatted;
  const running = !TERMINAL.includes(snap.status);
  $('rate').textContent = (running ? snap.stage_throughput : snap.symbols_per_second).toFixed(1);
  $('message').textContent = snap.message || '';
  cacheBadge(snap.cache);
  for (const [name, stage] of Object.entries(snap.stages)) {
    const row = document.querySelector(`tr[data-stage="${name}"]`);
    row.querySelector('.stage-status').textContent = stage.status;
    row.querySelector('.stage-pct').textContent = `${stage.progress.toFixed(1)}%`;
    row.querySelector('.fill').style.width = `${stage.progress}%`;
    row.querySelector('.stage-seconds').textContent = stage.seconds === null ? '—' : stage.seconds.toFixed(2);
    row.querySelector('.stage-eta').textContent = stage.status === 'running' ? snap.stage_eta_formatted
      : stage.status === 'completed' ? 'done' : '—';
  }
  cancelButton.hidden = TERMINAL.includes(snap.status);
  if (TERMINAL.includes(snap.status) && !finished) {
    finished = true;
    setConnection('');
    showOutcome(snap);
  }
}

// The end of the scan: its results (partial unless completed) and, for a failed scan, what
// happened and what to do next (the scan's own suggestions when it recorded some).
async function showOutcome(snap) {
  const outcome = $('outcome');
  let data = null;
  try {
    data = await showResults(page);
  } catch (error) {
    showError(outcome, error, 'The results could not be loaded:');
  }
  if (snap.status !== 'failed') return;
  const error = data && data.scan.error;
  const suggestions = error && error.suggestions && error.suggestions.length ? error.suggestions
    : ['start the scan again from New scan',
      'if it fails again, an operator should look at /health/detailed and the worker logs'];
  showError(outcome, {
    message: error ? `${error.code}: ${error.message}` : (snap.message || 'No reason was recorded.'),
    suggestions,
  }, 'The scan failed.');
  if (data) outcome.append(el('p', {}, 'Results recorded before the failure are shown below.'));
}

function connectSocket() {
  const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
  const socket = new WebSocket(scheme + location.host + page.websocket_url);
  let opened = false;
  socket.onopen = () => { opened = true; socketFailures = 0; retryDelay = 1000; setConnection(''); };
  socket.onmessage = (event) => render(JSON.parse(event.data));
  socket.onclose = () => {
    if (finished) return;
    if (!opened) socketFailures += 1;
    if (socketFailures >= WS_FAILURES_BEFORE_SSE) { connectEvents(); return; }
    reconnectLater(connectSocket);
  };
}

function reconnectLater(connect) {
  setConnection(`Connection lost. Reconnecting in ${Math.round(retryDelay / 1000)} s… `
    + 'Progress resumes from the latest snapshot; the scan itself keeps running.');
  setTimeout(connect, retryDelay);
  retryDelay = Math.min(retryDelay * 2, 10000);
}

// Server-Sent Events: EventSource reconnects by itself (with Last-Event-ID); an answer that is not
// a stream (401, 404) closes it for good, and the REST snapshot then says why.
function connectEvents() {
  const source = new EventSource(page.sse_url);
  const onSnapshot = (event) => render(JSON.parse(event.data));
  source.addEventListener('progress', onSnapshot);
  source.addEventListener('terminal', (event) => { onSnapshot(event); source.close(); });
  source.onopen = () => setConnection('');
  source.onerror = async () => {
    if (finished) { source.close(); return; }
    if (source.readyState !== EventSource.CLOSED) {
      setConnection('Connection lost. Reconnecting… Progress resumes from the latest snapshot.');
      return;
    }
    try {
      render(await call('GET', page.progress_url));
      if (!finished) reconnectLater(connectEvents);
    } catch (error) {
      if (error.code === 'NETWORK_ERROR') { reconnectLater(connectEvents); return; }
      showError($('outcome'), error, 'Progress cannot be followed:');
      setConnection('');
    }
  };
}

cancelButton.addEventListener('click', async () => {
  const note = $('cancel-note');
  cancelButton.disabled = true;
  cancelButton.textContent = 'Cancelling…';
  try {
    await call('POST', page.cancel_url);
    note.textContent = 'Cancel requested: running work stops within about a second; partial results are kept.';
    note.hidden = false;
  } catch (error) {
    showError($('outcome'), error, 'The scan could not be cancelled:');
    cancelButton.disabled = false;
    cancelButton.textContent = 'Cancel scan';
  }
});

window.addEventListener('online', () => { retryDelay = 1000; });
cancelButton.hidden = TERMINAL.includes(page.status);
connectSocket();
