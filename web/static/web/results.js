// A finished scan's results: performance figures, a sortable and filterable table, the skip list.
import { call, fmt, el } from './api.js';
import { showChart } from './chart.js';

const $ = (id) => document.getElementById(id);
const SKIPPED_SHOWN = 300;
const STAGE_NAMES = {
  universe_loading: 'Universe loading', data_fetching: 'Data fetching',
  symbol_scanning: 'Symbol scanning', finalization: 'Finalization',
};
// Columns: key, header, how a row shows it, numeric (and, for the screen's, the value it sorts by).
const COLUMNS = [
  ['symbol', 'Symbol', null, false],
  ['name', 'Name', (r) => r.name, false],
  ['sector', 'Sector', (r) => r.sector, false],
  ['tech_rating', 'Rating', (r) => fmt(r.tech_rating, 1), true],
  ['signal', 'Signal', (r) => r.signal, false],
  ['close', 'Close', (r) => fmt(r.close), true],
  ['entry', 'Entry', (r) => fmt(r.entry), true],
  ['stop', 'Stop', (r) => fmt(r.stop), true],
  ['target', 'Target', (r) => fmt(r.target), true],
  ['reward_risk', 'R:R', (r) => fmt(r.reward_risk, 1), true],
  ['alpha_5d', 'Alpha 5d', (r) => percent(r.alpha_5d), true],
  ['alpha_10d', 'Alpha 10d', (r) => percent(r.alpha_10d), true],
  ['position_size', 'Size', (r) => fmt(r.position_size, 0), true],
  ['quality_flags', 'Data quality', (r) => r.quality_flags.join(', '), false],
  ['risk_flags', 'Risk', (r) => r.risk_flags.join(', '), false],
];

// An alpha (a fraction) as a signed percentage, or a dash when the row has none (see its flags).
function percent(value) {
  return value === null || value === undefined ? '—' : `${value >= 0 ? '+' : ''}${fmt(value * 100, 2)}%`;
}

const state = { rows: [], columns: COLUMNS, sortKey: 'tech_rating', descending: true, page: null };

// A screen value: a number (digits by size), true/false, or a dash when undefined.
function screenValue(value) {
  if (value === null || value === undefined) return '—';
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value !== 'number') return String(value);
  const size = Math.abs(value);
  return fmt(value, Number.isInteger(value) || size >= 1000 ? 0 : size >= 1 ? 2 : 4);
}

// The screen's columns when the scan ran one: its rank, then each field and call its filter and
// rank_by name (the union over the rows, in the first row's order), after the sector.
function screenColumns(rows) {
  const keys = [];
  for (const r of rows) for (const key of Object.keys((r.screen && r.screen.values) || {})) if (!keys.includes(key)) keys.push(key);
  if (!keys.length) return [];
  const numeric = (key) => rows.some((r) => typeof r.screen?.values?.[key] === 'number');
  const rank = (r) => r.screen?.rank ?? null;
  return [
    ['screen:rank', 'Rank', (r) => (rank(r) === null ? '—' : String(rank(r))), true, rank],
    ...keys.map((key) => {
      const value = (r) => r.screen?.values?.[key] ?? null;
      return [`screen:${key}`, key, (r) => screenValue(value(r)), numeric(key), value];
    }),
  ];
}

function withScreenColumns(rows) {
  const extra = screenColumns(rows);
  if (!extra.length) return COLUMNS;
  const at = COLUMNS.findIndex(([key]) => key === 'sector') + 1;
  return [...COLUMNS.slice(0, at), ...extra, ...COLUMNS.slice(at)];
}

function metric(label, value) {
  return el('div', {}, el('dt', {}, label), el('dd', {}, value));
}

function showMetrics(scan) {
  const m = scan.metrics;
  const cache = m.cache || {};
  const items = [
    metric('Status', scan.status),
    metric('Scan time', m.elapsed_seconds === null || m.elapsed_seconds === undefined ? '—' : `${fmt(m.elapsed_seconds)} s`),
    metric('Symbols/s', fmt(m.symbols_per_second, 1)),
    metric('Results / requested', `${m.results ?? '—'} / ${m.requested_symbols ?? '—'}`),
    metric('Skipped', String(m.skipped ?? '—')),
    metric('Cache hit rate', cache.available === false ? 'cache unavailable'
      : cache.hit_rate === null || cache.hit_rate === undefined ? '—' : `${fmt(cache.hit_rate, 1)}%`),
    metric('Data', `${scan.data_provider}${scan.synthetic ? ' (synthetic)' : ''}, as of ${scan.as_of ?? '—'}`),
  ];
  for (const [stage, seconds] of Object.entries(m.stage_seconds || {})) {
    items.push(metric(STAGE_NAMES[stage] || stage, seconds === null ? 'not run' : `${fmt(seconds, 3)} s`));
  }
  $('metrics').replaceChildren(...items);
}

function showPartial(scan) {
  const note = $('partial-note');
  if (scan.status === 'completed') return;
  const m = scan.metrics;
  const cancelled = (m.skipped_by_reason || {}).cancelled || 0;
  note.textContent = `${scan.status === 'cancelled' ? 'Cancelled' : 'Failed'}: partial results, `
    + `${m.results ?? 0} of ${m.requested_symbols ?? '?'} symbols`
    + `${cancelled ? `; ${cancelled} were not scanned (cancelled)` : ''}.`;
  note.hidden = false;
}

function options(select, values) {
  select.append(...[...new Set(values)].sort().map((v) => el('option', { value: v }, v)));
}

function header() {
  const row = document.querySelector('#results-table thead tr');
  row.replaceChildren(...state.columns.map(([key, label, , numeric]) => {
    const screen = key.startsWith('screen:');
    const button = el('button', { type: 'button', 'data-key': key }, label);
    if (screen && key !== 'screen:rank') button.setAttribute('title', `From the screen: ${label}`);
    button.addEventListener('click', () => {
      state.descending = state.sortKey === key ? !state.descending : numeric && key !== 'screen:rank';
      state.sortKey = key;
      draw();
    });
    return el('th', { scope: 'col', class: [numeric ? 'num' : '', screen ? 'screen-col' : ''].join(' ').trim() }, button);
  }));
}

function visibleRows() {
  const text = $('flt-text').value.trim().toLowerCase();
  const sector = $('flt-sector').value;
  const signal = $('flt-signal').value;
  const minimum = Number($('flt-rating').value || '-Infinity');
  const flags = $('flt-flags').value;
  const rows = state.rows.filter((r) => (!text || r.symbol.toLowerCase().includes(text) || r.name.toLowerCase().includes(text))
    && (!sector || r.sector === sector) && (!signal || r.signal === signal) && r.tech_rating >= minimum
    && (!flags || (flags === 'risk' ? r.risk_flags.length > 0 : (flags === 'none') === (r.quality_flags.length === 0))));
  const key = state.sortKey;
  const column = state.columns.find(([k]) => k === key);
  const sign = state.descending ? -1 : 1;
  const value = column && column[4] ? column[4] : (r) => (Array.isArray(r[key]) ? r[key].join(',') : r[key]);
  return rows.sort((a, b) => {
    const x = value(a); const y = value(b);
    if (x === y) return a.symbol < b.symbol ? -1 : 1;
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    return (x < y ? -1 : 1) * sign;
  });
}

function draw() {
  const rows = visibleRows();
  for (const th of document.querySelectorAll('#results-table thead th')) {
    const key = th.querySelector('button').dataset.key;
    if (key === state.sortKey) th.setAttribute('aria-sort', state.descending ? 'descending' : 'ascending');
    else th.removeAttribute('aria-sort');
  }
  const body = document.querySelector('#results-table tbody');
  body.replaceChildren(...rows.map((r) => {
    const open = el('button', { type: 'button', class: 'link', 'aria-label': `Chart of ${r.symbol}` }, r.symbol);
    open.addEventListener('click', () => showChart(state.page, r, open));
    return el('tr', { 'data-symbol': r.symbol }, ...state.columns.map(([key, , show, numeric]) => (key === 'symbol'
      ? el('th', { scope: 'row' }, open)
      : el('td', { class: [numeric ? 'num' : '', key.startsWith('screen:') ? 'screen-col' : ''].join(' ').trim(), 'data-key': key }, show(r)))));
  }));
  $('shown').textContent = `Showing ${rows.length} of ${state.rows.length} results.`;
}

function showSkipped(skipped) {
  const body = $('skipped-body');
  const counts = {};
  for (const s of skipped) counts[s.reason] = (counts[s.reason] || 0) + 1;
  const summary = Object.entries(counts).map(([reason, n]) => `${reason}: ${n}`).join(', ') || 'none';
  const list = el('ul', {}, ...skipped.slice(0, SKIPPED_SHOWN).map((s) => el('li', {}, `${s.symbol}: ${s.reason}${s.detail ? ` (${s.detail})` : ''}`)));
  body.replaceChildren(el('p', {}, `${skipped.length} skipped: ${summary}.`), list);
  if (skipped.length > SKIPPED_SHOWN) body.append(el('p', { class: 'note' }, `The first ${SKIPPED_SHOWN} are listed; the CSV holds results only.`));
}

// Loads and shows the results of the finished scan of `page` (the page's data); answers them.
// The API answers large results a page at a time: every page is fetched, following `next`.
export async function showResults(page) {
  const data = await call('GET', page.results_url);
  for (let next = data.next; next;) {
    const more = await call('GET', next);
    data.results = data.results.concat(more.results);
    next = more.next;
  }
  state.page = page;
  state.rows = data.results;
  state.columns = withScreenColumns(state.rows);
  if (state.columns !== COLUMNS) { state.sortKey = 'screen:rank'; state.descending = false; } // the screen's order
  showMetrics(data.scan);
  showPartial(data.scan);
  options($('flt-sector'), state.rows.map((r) => r.sector));
  options($('flt-signal'), state.rows.map((r) => r.signal));
  header();
  for (const id of ['flt-text', 'flt-sector', 'flt-signal', 'flt-rating', 'flt-flags']) $(id).addEventListener('input', draw);
  $('filters').addEventListener('submit', (event) => event.preventDefault());
  draw();
  showSkipped(data.skipped);
  $('results').hidden = false;
  return data;
}
