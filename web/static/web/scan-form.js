// The scan form: posts POST /scan/start and shows the API's errors next to the fields they name.
// The screen editor above the options (screens.js) adds the filter, ranking or saved screen.
import { call, showError, el } from './api.js';
import { initScreens } from './screens.js';

const form = document.getElementById('scan-form');
const formError = document.getElementById('form-error');
const start = document.getElementById('start');
const NUMBERS = ['max_symbols', 'min_tech_rating', 'account_size', 'risk_pct', 'target_rr'];

// The scan options: only fields the user filled; a number field that is not a number is sent as
// typed, so the API's message (and not the browser's) says what is wrong.
function options() {
  const data = {};
  const sectors = [...form.querySelectorAll('input[name=sectors]:checked')].map((box) => box.value);
  if (sectors.length) data.sectors = sectors;
  const symbols = form.elements.symbols.value.split(/[\s,]+/).filter(Boolean);
  if (symbols.length) data.symbols = symbols;
  for (const name of NUMBERS) {
    const raw = form.elements[name].value.trim();
    if (raw !== '') data[name] = Number.isFinite(Number(raw)) ? Number(raw) : raw;
  }
  if (form.elements.as_of.value) data.as_of = form.elements.as_of.value;
  return data;
}

// Puts a saved screen's options in the form; the options it does not name are emptied.
function fill(saved) {
  const sectors = new Set(saved.sectors || []);
  for (const box of form.querySelectorAll('input[name=sectors]')) box.checked = sectors.has(box.value);
  form.elements.symbols.value = (saved.symbols || []).join(', ');
  for (const name of NUMBERS) form.elements[name].value = saved[name] ?? '';
  form.elements.as_of.value = saved.as_of || '';
}

const screens = initScreens(form, { options, fill });

// The expressions' own errors stay: the screen editor redraws them with each check.
const EXPRESSIONS = ['filter', 'rank_by'];

function clearErrors() {
  formError.hidden = true;
  for (const node of form.querySelectorAll('.field-error')) {
    if (EXPRESSIONS.some((name) => node.id === `e-${name}`)) continue;
    node.hidden = true; node.replaceChildren();
  }
  for (const node of form.querySelectorAll('[aria-invalid]')) {
    if (!EXPRESSIONS.includes(node.name)) node.removeAttribute('aria-invalid');
  }
}

function showFieldError(error) {
  if (screens.showError(error)) {
    document.getElementById(`f-${error.details.field || 'filter'}`)?.focus();
    return true;
  }
  const field = error.details.field;
  const slot = field && document.getElementById(`e-${field}`);
  if (!slot) return false;
  slot.append(error.message);
  if (error.suggestions.length) {
    slot.append(el('span', { class: 'suggestions' }, ` Did you mean: ${error.suggestions.join(', ')}?`));
  }
  slot.hidden = false;
  const control = field === 'sectors' ? form.querySelector('input[name=sectors]') : form.elements[field];
  if (field !== 'sectors') control.setAttribute('aria-invalid', 'true');
  control.focus();
  return true;
}

function showActiveScans(ids) {
  const list = el('ul');
  for (const id of ids) list.append(el('li', {}, el('a', { href: `/scans/${id}/` }, `Scan ${id.slice(0, 8)}`)));
  formError.append(list);
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  clearErrors();
  start.disabled = true;
  start.textContent = 'Starting…';
  try {
    const started = await call('POST', '/scan/start', screens.startBody(options()));
    location.assign(`/scans/${started.scan_id}/`);
    return;
  } catch (error) {
    if (!showFieldError(error)) {
      showError(formError, error);
      if (error.code === 'TOO_MANY_ACTIVE_SCANS') showActiveScans(error.details.active_scan_ids || []);
      formError.focus();
    }
  }
  start.disabled = false;
  start.textContent = 'Start scan';
});
formError.tabIndex = -1;

async function listActive() {
  const section = document.getElementById('active-scans');
  const list = document.getElementById('active-list');
  try {
    const active = await call('GET', '/scan/active');
    list.replaceChildren(...active.map((scan) => el('li', {},
      el('a', { href: `/scans/${scan.scan_id}/` }, `Scan ${scan.scan_id.slice(0, 8)}`),
      ` ${scan.status}, ${scan.overall_progress}%`)));
    section.hidden = active.length === 0;
  } catch (error) {
    showError(formError, error, 'Your running scans could not be listed:');
  }
}
listActive();
