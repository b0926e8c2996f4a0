// A symbol's chart, drawn as SVG: price with SMA 20/50/200 and Bollinger bands and the trade
// plan's entry, stop and target; volume; RSI 14; MACD 12/26/9.
import { call, fmt, el, showError } from './api.js';

const NS = 'http://www.w3.org/2000/svg';
const WIDTH = 800;
const LEFT = 58;
const RIGHT = 92;
const PANELS = { price: [12, 270], volume: [288, 340], rsi: [358, 428], macd: [446, 526] };
const HEIGHT = 556;
const COLORS = {
  close: '#1b1f24', sma_20: '#c25e00', sma_50: '#7a3db8', sma_200: '#0b7a75', band: '#5f82ad',
  entry: '#0b57a4', stop: '#a11d1d', target: '#1b6b2f', volume: '#7b8794', rsi: '#7a3db8',
  macd: '#0b57a4', macd_signal: '#c25e00', up: '#4f9a62', down: '#c45c5c',
};
const $ = (id) => document.getElementById(id);
let opener = null;

function node(tag, attrs = {}, text = '') {
  const n = document.createElementNS(NS, tag);
  for (const [name, value] of Object.entries(attrs)) n.setAttribute(name, String(value));
  if (text) n.textContent = text;
  return n;
}

function yScale(lo, hi, [top, bottom]) {
  const span = hi - lo || 1;
  return (v) => bottom - ((v - lo) / span) * (bottom - top);
}

// An SVG path through the values, broken where a value is missing.
function line(values, x, y, color, width = 1.3, dash = '') {
  let d = '';
  let pen = 'M';
  values.forEach((v, i) => {
    if (v === null) { pen = 'M'; return; }
    d += `${pen}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
    pen = 'L';
  });
  return node('path', { d, fill: 'none', stroke: color, 'stroke-width': width, 'stroke-dasharray': dash });
}

function label(x, y, text, anchor = 'start', color = '#1b1f24') {
  return node('text', { x, y, 'font-size': 11, fill: color, 'text-anchor': anchor }, text);
}

function compact(n) {
  return Number(n).toLocaleString('en-US', { notation: 'compact', maximumFractionDigits: 1 });
}

function bounds(lists) {
  const values = lists.flat().filter((v) => v !== null && v !== undefined);
  return [Math.min(...values), Math.max(...values)];
}

function pricePanel(svg, c, x) {
  const plan = c.plan;
  const [lo, hi] = bounds([c.close, c.bb_upper, c.bb_lower, c.sma_20, c.sma_50, c.sma_200, [plan.entry, plan.stop, plan.target]]);
  const pad = (hi - lo) * 0.04;
  const y = yScale(lo - pad, hi + pad, PANELS.price);
  const band = c.bb_upper.map((u, i) => (u !== null && c.bb_lower[i] !== null ? i : null)).filter((i) => i !== null);
  if (band.length) {
    const points = [...band.map((i) => `${x(i)},${y(c.bb_upper[i])}`), ...band.reverse().map((i) => `${x(i)},${y(c.bb_lower[i])}`)];
    svg.append(node('polygon', { points: points.join(' '), fill: COLORS.band, 'fill-opacity': 0.14, stroke: 'none' }));
  }
  svg.append(line(c.bb_upper, x, y, COLORS.band, 0.8), line(c.bb_lower, x, y, COLORS.band, 0.8));
  for (const name of ['sma_200', 'sma_50', 'sma_20']) svg.append(line(c[name], x, y, COLORS[name], 1.2));
  svg.append(line(c.close, x, y, COLORS.close, 1.6));
  for (const name of ['target', 'entry', 'stop']) {
    if (plan[name] === null || plan[name] === undefined) continue;
    const level = y(plan[name]);
    svg.append(
      node('line', { x1: LEFT, x2: WIDTH - RIGHT, y1: level, y2: level, stroke: COLORS[name], 'stroke-width': 1.4, 'stroke-dasharray': '6 4', 'data-plan': name }),
      label(WIDTH - RIGHT + 4, level + 4, `${name} ${fmt(plan[name])}`, 'start', COLORS[name]),
    );
  }
  svg.append(label(LEFT - 4, PANELS.price[0] + 10, fmt(hi + pad), 'end'), label(LEFT - 4, PANELS.price[1], fmt(lo - pad), 'end'),
    label(LEFT + 4, PANELS.price[0] + 12, 'Price'));
}

function volumePanel(svg, c, x, barWidth) {
  const [, hi] = bounds([c.volume]);
  const y = yScale(0, hi, PANELS.volume);
  c.volume.forEach((v, i) => {
    if (v === null) return;
    svg.append(node('rect', { x: x(i) - barWidth / 2, y: y(v), width: barWidth, height: PANELS.volume[1] - y(v), fill: COLORS.volume }));
  });
  svg.append(label(LEFT + 4, PANELS.volume[0] + 10, 'Volume'), label(LEFT - 4, PANELS.volume[0] + 10, compact(hi), 'end'));
}

function rsiPanel(svg, c, x) {
  const y = yScale(0, 100, PANELS.rsi);
  for (const level of [30, 70]) {
    svg.append(node('line', { x1: LEFT, x2: WIDTH - RIGHT, y1: y(level), y2: y(level), stroke: '#9aa5b1', 'stroke-dasharray': '3 3' }),
      label(LEFT - 4, y(level) + 4, String(level), 'end'));
  }
  svg.append(line(c.rsi_14, x, y, COLORS.rsi), label(LEFT + 4, PANELS.rsi[0] + 10, 'RSI 14'));
}

function macdPanel(svg, c, x, barWidth) {
  const [lo, hi] = bounds([c.macd, c.macd_signal, c.macd_hist, [0]]);
  const y = yScale(lo, hi, PANELS.macd);
  c.macd_hist.forEach((v, i) => {
    if (v === null) return;
    const top = Math.min(y(v), y(0));
    svg.append(node('rect', { x: x(i) - barWidth / 2, y: top, width: barWidth, height: Math.abs(y(v) - y(0)), fill: v >= 0 ? COLORS.up : COLORS.down }));
  });
  svg.append(node('line', { x1: LEFT, x2: WIDTH - RIGHT, y1: y(0), y2: y(0), stroke: '#9aa5b1' }),
    line(c.macd, x, y, COLORS.macd), line(c.macd_signal, x, y, COLORS.macd_signal),
    label(LEFT + 4, PANELS.macd[0] + 10, 'MACD 12/26/9'));
}

function draw(c) {
  const n = c.dates.length;
  const step = (WIDTH - LEFT - RIGHT) / Math.max(n - 1, 1);
  const x = (i) => LEFT + i * step;
  const svg = node('svg', { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: 'img', 'aria-labelledby': 'chart-title chart-summary' });
  svg.append(node('rect', { x: 0, y: 0, width: WIDTH, height: HEIGHT, fill: '#ffffff' }));
  pricePanel(svg, c, x);
  volumePanel(svg, c, x, Math.max(step * 0.7, 0.5));
  rsiPanel(svg, c, x);
  macdPanel(svg, c, x, Math.max(step * 0.7, 0.5));
  for (const i of [0, Math.floor(n / 2), n - 1]) {
    svg.append(label(x(i), HEIGHT - 10, c.dates[i], i === 0 ? 'start' : i === n - 1 ? 'end' : 'middle'));
  }
  return svg;
}

function legend() {
  const items = [['close', 'Close'], ['sma_20', 'SMA 20'], ['sma_50', 'SMA 50'], ['sma_200', 'SMA 200'],
    ['band', 'Bollinger 20/2'], ['entry', 'Entry'], ['stop', 'Stop'], ['target', 'Target']];
  $('chart-legend').replaceChildren(...items.map(([key, text]) => el('li', {},
    el('span', { class: 'swatch', style: `background:${COLORS[key]}` }), text)));
}

// Opens the chart of `row` (a result row) of the page's scan; `button` gets focus back on close.
export async function showChart(page, row, button) {
  opener = button;
  const section = $('chart');
  const canvas = $('chart-canvas');
  document.querySelectorAll('tr.selected').forEach((tr) => tr.classList.remove('selected'));
  button.closest('tr').classList.add('selected');
  $('chart-title').textContent = `${row.symbol} · ${row.name}`;
  $('chart-summary').textContent = 'Loading…';
  canvas.replaceChildren();
  section.hidden = false;
  try {
    const chart = await call('GET', page.chart_url + encodeURIComponent(row.symbol));
    const last = chart.close.length - 1;
    $('chart-summary').textContent = `${chart.dates[0]} to ${chart.dates[last]}: last close ${fmt(chart.close[last])}; `
      + `trade plan entry ${fmt(chart.plan.entry)}, stop ${fmt(chart.plan.stop)}, target ${fmt(chart.plan.target)}`
      + `${page.synthetic ? ' (synthetic data)' : ''}.`;
    legend();
    canvas.append(draw(chart));
  } catch (error) {
    $('chart-summary').textContent = '';
    const box = el('div', { class: 'alert', role: 'alert' });
    showError(box, error, 'The chart could not be loaded:');
    canvas.append(box);
  }
  $('chart-title').focus();
}

$('chart-close').addEventListener('click', () => {
  $('chart').hidden = true;
  if (opener) opener.focus();
});
