// The scan form's screen editor: the filter and rank_by expressions (completed from
// GET /api/screens/catalogue, checked as the user types with POST /api/screens/check), the
// "what does this match now" count (POST /api/screens/preview) and the saved screens
// (/api/screens/: pick one, save a new one, save changes, rename, delete).
import { call, showError, el } from './api.js';
import { expressionField } from './expression.js';

const $ = (id) => document.getElementById(id);
const CHECK_DELAY_MS = 350;
const EXPRESSION_CODES = { INVALID_FILTER: 'filter', INVALID_RANK_BY: 'rank_by' };

const catalogue = { entries: [], names: new Set() };
const state = { screens: [], current: null, checkSeq: 0, checkTimer: null, dialog: null };

// A list answer of the API: a plain array or a page of them.
const listOf = (data) => (Array.isArray(data) ? data : (data && data.results) || []);
const sortedArrays = (value) => (Array.isArray(value) ? [...value].sort() : value);
const same = (a, b) => JSON.stringify(sortedArrays(a)) === JSON.stringify(sortedArrays(b));

async function loadCatalogue() {
  const data = await call('GET', '/api/screens/catalogue');
  const fields = (data.fields || []).map((f) => ({
    name: f.name, kind: 'field', type: f.type, label: f.name, about: f.description || '',
  }));
  const functions = (data.functions || []).map((f) => ({
    name: f.name, kind: 'function', type: f.returns || 'function', label: f.signature || `${f.name}()`, about: f.description || '',
  }));
  catalogue.entries = [...fields, ...functions].sort((a, b) => (a.name < b.name ? -1 : 1));
  catalogue.names = new Set(catalogue.entries.map((e) => e.name));
}

// Wires the editor into `form`. `options()`: the form's scan options as a start body (without
// the screen); `fill(options)`: puts a saved screen's options in the form. Answers what the scan
// form needs: {startBody(options), showError(error), clearErrors()}.
export function initScreens(form, { options, fill }) {
  const filter = $('f-filter');
  const rankBy = $('f-rank_by');
  const order = $('f-order');
  const picker = $('f-screen');
  const status = $('screen-status');
  const problem = $('screen-error');
  const fieldOptions = { entries: () => catalogue.entries, isName: (s) => catalogue.names.has(s) };
  const fields = {
    filter: expressionField(filter, $('e-filter'), fieldOptions),
    rank_by: expressionField(rankBy, $('e-rank_by'), fieldOptions),
  };

  const editor = () => ({ filter: filter.value, rank_by: rankBy.value, order: order.value });

  function clearErrors() {
    fields.filter.clearError();
    fields.rank_by.clearError();
    problem.hidden = true;
  }

  // An INVALID_FILTER or INVALID_RANK_BY answer, shown at the expression; false for any other.
  function showExpressionError(error) {
    const name = EXPRESSION_CODES[error.code] || (['filter', 'rank_by'].includes(error.details.field) && error.details.field);
    if (!name) return false;
    for (const [other, field] of Object.entries(fields)) if (other !== name) field.clearError();
    fields[name].showError(error);
    status.textContent = name === 'filter' ? 'The filter is not valid yet.' : 'The ranking is not valid yet.';
    return true;
  }

  function fail(error, lead) {
    if (showExpressionError(error)) return;
    showError(problem, error, lead);
    problem.focus();
  }

  // --- Checking as the user types -------------------------------------------------------------

  async function check() {
    const seq = ++state.checkSeq;
    const body = editor();
    if (!body.filter.trim() && !body.rank_by.trim()) {
      fields.filter.clearError();
      fields.rank_by.clearError();
      status.textContent = '';
      return;
    }
    status.textContent = 'Checking…';
    try {
      const answer = await call('POST', '/api/screens/check', body);
      if (seq !== state.checkSeq) return;
      fields.filter.clearError();
      fields.rank_by.clearError();
      const names = [...new Set([...(answer.filter?.names || []), ...(answer.rank_by?.names || [])])];
      status.textContent = `✓ Valid${answer.filter ? '' : ' (no filter: every symbol)'}.`
        + (names.length ? ` The results will show: ${names.join(', ')}.` : '');
    } catch (error) {
      if (seq !== state.checkSeq) return;
      if (!showExpressionError(error)) {
        status.textContent = '';
        showError(problem, error, 'The screen could not be checked:');
      }
    }
  }

  function checkSoon() {
    clearTimeout(state.checkTimer);
    state.checkTimer = setTimeout(check, CHECK_DELAY_MS);
  }

  filter.addEventListener('input', checkSoon);
  rankBy.addEventListener('input', checkSoon);
  order.addEventListener('change', checkSoon);

  // --- What the screen matches now ------------------------------------------------------------

  const preview = $('screen-preview');
  const previewResult = $('preview-result');
  preview.addEventListener('click', async () => {
    preview.disabled = true;
    previewResult.textContent = 'Counting…';
    problem.hidden = true;
    try {
      const data = await call('POST', '/api/screens/preview', startBody(options()));
      const universe = typeof data.universe === 'number' ? data.universe
        : (data.universe && (data.universe.count ?? data.universe.length)) ?? '?';
      previewResult.textContent = `${data.matched} of ${universe} symbols match as of ${data.as_of}.`;
      previewResult.dataset.matched = String(data.matched);
    } catch (error) {
      previewResult.textContent = '';
      fail(error, 'The matches could not be counted:');
    }
    preview.disabled = false;
  });

  // --- Saved screens --------------------------------------------------------------------------

  const buttons = {
    saveNew: $('screen-save-new'), save: $('screen-save'), rename: $('screen-rename'), remove: $('screen-delete'),
  };
  const description = $('screen-description');

  // The options of the form, with those of the chosen screen the form has no control for
  // (min_price, lookback_days, ...) kept.
  function screenOptions() {
    const shown = options();
    const saved = state.current ? state.current.options || {} : {};
    const hidden = Object.fromEntries(Object.entries(saved).filter(([key]) => !(key in shown) && !form.elements[key]));
    return { ...hidden, ...shown };
  }

  function edited() {
    const screen = state.current;
    if (!screen) return false;
    const now = editor();
    return now.filter !== screen.filter || now.rank_by !== screen.rank_by || now.order !== screen.order
      || !same(screenOptions(), screen.options || {});
  }

  function refreshButtons() {
    const chosen = Boolean(state.current);
    buttons.save.disabled = !chosen || !edited();
    buttons.rename.disabled = !chosen;
    buttons.remove.disabled = !chosen;
    const dirty = $('screen-dirty');
    dirty.hidden = !chosen || !edited();
  }

  function drawPicker() {
    const chosen = state.current ? String(state.current.id) : '';
    picker.replaceChildren(el('option', { value: '' }, 'New screen (not saved)'),
      ...state.screens.map((s) => el('option', { value: String(s.id) }, s.name)));
    picker.value = chosen;
  }

  function choose(screen) {
    state.current = screen;
    drawPicker();
    description.textContent = screen && screen.description ? screen.description : '';
    description.hidden = !description.textContent;
    if (screen) {
      fields.filter.set(screen.filter || '');
      fields.rank_by.set(screen.rank_by || '');
      order.value = screen.order || 'desc';
      fill(screen.options || {});
      clearErrors();
      check();
    }
    refreshButtons();
  }

  async function loadScreens(selectId = state.current && state.current.id) {
    state.screens = listOf(await call('GET', '/api/screens/'));
    const again = state.screens.find((s) => s.id === selectId) || null;
    state.current = again;
    drawPicker();
    refreshButtons();
    return again;
  }

  picker.addEventListener('change', () => {
    problem.hidden = true;
    choose(state.screens.find((s) => String(s.id) === picker.value) || null);
  });
  form.addEventListener('input', refreshButtons);
  form.addEventListener('change', refreshButtons);

  // The body of a saved screen: its name (when given), the editor and the options.
  const screenBody = (extra = {}) => ({ ...extra, ...editor(), options: screenOptions() });

  buttons.save.addEventListener('click', async () => {
    problem.hidden = true;
    buttons.save.disabled = true;
    try {
      const saved = await call('PATCH', `/api/screens/${state.current.id}`, screenBody());
      await loadScreens(saved.id);
      status.textContent = `Saved “${saved.name}”.`;
    } catch (error) {
      fail(error, 'The screen could not be saved:');
    }
    refreshButtons();
  });

  // --- The name dialog: save as new, rename, delete -----------------------------------------

  const dialog = $('screen-dialog');
  const nameInput = $('screen-name');
  const aboutInput = $('screen-about');
  const nameError = $('e-screen-name');
  const ok = $('screen-dialog-ok');

  function ask(mode) {
    const screen = state.current;
    state.dialog = mode;
    const titles = { create: 'Save as a new screen', rename: 'Rename the screen', remove: 'Delete the screen' };
    $('screen-dialog-title').textContent = titles[mode];
    const text = $('screen-dialog-text');
    text.hidden = mode !== 'remove';
    text.textContent = mode === 'remove'
      ? `Delete the saved screen “${screen.name}”? Scans already run with it keep their results.` : '';
    $('screen-dialog-fields').hidden = mode === 'remove';
    $('screen-dialog-describe').hidden = mode !== 'create';
    nameInput.value = mode === 'rename' ? screen.name : '';
    aboutInput.value = mode === 'create' && screen ? screen.description || '' : '';
    nameError.hidden = true;
    nameInput.removeAttribute('aria-invalid');
    ok.textContent = { create: 'Save', rename: 'Rename', remove: 'Delete' }[mode];
    ok.className = mode === 'remove' ? 'danger' : 'primary';
    ok.disabled = false;
    dialog.showModal();
    (mode === 'remove' ? $('screen-dialog-cancel') : nameInput).focus();
  }

  function dialogError(error) {
    if (state.dialog !== 'remove' && (error.code === 'SCREEN_NAME_TAKEN' || error.details.field === 'name')) {
      nameError.replaceChildren(error.message);
      if (error.suggestions.length) nameError.append(el('span', { class: 'suggestions' }, ` ${error.suggestions.join('; ')}.`));
      nameError.hidden = false;
      nameInput.setAttribute('aria-invalid', 'true');
      nameInput.focus();
      return;
    }
    dialog.close();
    fail(error, state.dialog === 'remove' ? 'The screen could not be deleted:' : 'The screen could not be saved:');
  }

  $('screen-dialog-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const name = nameInput.value.trim();
    if (state.dialog !== 'remove' && !name) {
      dialogError({ code: 'INVALID_NAME', message: 'Give the screen a name.', suggestions: [], details: { field: 'name' } });
      return;
    }
    ok.disabled = true;
    try {
      if (state.dialog === 'create') {
        const created = await call('POST', '/api/screens/', screenBody({ name, description: aboutInput.value.trim() }));
        await loadScreens(created.id);
        choose(state.current || created);
        status.textContent = `Saved as “${created.name}”.`;
      } else if (state.dialog === 'rename') {
        const renamed = await call('PATCH', `/api/screens/${state.current.id}`, { name });
        await loadScreens(renamed.id);
        status.textContent = `Renamed to “${renamed.name}”.`;
      } else {
        const gone = state.current;
        await call('DELETE', `/api/screens/${gone.id}`);
        await loadScreens(null);
        choose(null);
        status.textContent = `Deleted “${gone.name}”.`;
      }
      dialog.close();
    } catch (error) {
      dialogError(error);
    }
    ok.disabled = false;
  });
  $('screen-dialog-cancel').addEventListener('click', () => dialog.close());
  dialog.addEventListener('close', () => { state.dialog = null; picker.focus(); });
  buttons.saveNew.addEventListener('click', () => ask('create'));
  buttons.rename.addEventListener('click', () => ask('rename'));
  buttons.remove.addEventListener('click', () => ask('remove'));

  // --- The scan's start body ------------------------------------------------------------------

  // The body of POST /scan/start (and of the preview) for the form's `scanOptions`: with a
  // saved screen chosen, its screen_id and whatever differs from it; without one, the filter,
  // rank_by and order as shown. A saved option the user cleared cannot be sent "beside" the
  // screen_id (it would come back from the screen), so then the whole form is sent instead.
  function startBody(scanOptions) {
    const now = editor();
    const screen = state.current;
    if (!screen) {
      const body = { ...scanOptions };
      if (now.filter.trim()) body.filter = now.filter;
      if (now.rank_by.trim()) body.rank_by = now.rank_by;
      if (now.order !== 'desc') body.order = now.order;
      return body;
    }
    const saved = screen.options || {};
    const cleared = Object.keys(saved).some((key) => form.elements[key] && !(key in scanOptions));
    if (cleared) return { ...screenOptions(), ...now };
    const body = { screen_id: screen.id };
    for (const [key, value] of Object.entries(scanOptions)) if (!same(value, saved[key])) body[key] = value;
    for (const key of ['filter', 'rank_by', 'order']) if (now[key] !== screen[key]) body[key] = now[key];
    return body;
  }

  problem.tabIndex = -1;
  loadCatalogue().catch((error) => showError(problem, error, 'Completion is unavailable (the catalogue could not be read):'));
  loadScreens(null).catch((error) => showError(problem, error, 'Your saved screens could not be listed:'));
  return { startBody, showError: showExpressionError, clearErrors };
}
