// An expression control of the screen editor (the filter textarea, the rank_by input): the
// catalogue's field and function names completed as the user types one, and a parse error
// underlined where it is, with its message and suggestions (a suggested name replaces the bad one).
//
// The underline is drawn on a mirror behind the control: the same text, in the same font and box,
// transparent but for a <mark> around the bad token; the control itself is transparent.
import { el } from './api.js';

const NAME_BEFORE = /[A-Za-z_][A-Za-z0-9_]*$/;
const NAME_AFTER = /^[A-Za-z0-9_]*/;
const TOKEN = /^(?:[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+|<=|>=|==|!=|\S)/;
const SHOWN = 8;

// The name around `caret` in `text`: its span and the part typed before the caret.
function nameAt(text, caret) {
  const before = text.slice(0, caret).match(NAME_BEFORE);
  if (!before) return null;
  const start = caret - before[0].length;
  if (start > 0 && /[0-9.]/.test(text[start - 1])) return null; // the exponent of a number, 1e5
  const after = text.slice(caret).match(NAME_AFTER)[0];
  return { start, end: caret + after.length, prefix: before[0].toLowerCase() };
}

// The span to underline for an error at `position`: the token that starts there (a name, a
// number, an operator, one character), or an empty span at the end of the text.
// `position` counts characters (code points, as the API does); JavaScript indexes UTF-16 units.
function badSpan(text, position) {
  const points = Array.from(text);
  let start = points.slice(0, Math.max(0, Number(position) || 0)).join('').length;
  while (start < text.length && /\s/.test(text[start])) start += 1; // the token after spaces
  const token = text.slice(start).match(TOKEN);
  return token ? { start, end: start + token[0].length } : { start: text.length, end: text.length };
}

// Wires `control` (a textarea or text input inside its `.expr` wrapper) for completion from
// `entries()` ([{name, kind: 'field'|'function', label, about}], sorted) and for errors shown in
// `slot`. `isName(text)`: whether a suggestion is a name of the language (a clickable fix).
// Answers {showError(error), clearError(), set(text)}.
export function expressionField(control, slot, { entries, isName }) {
  const wrap = control.closest('.expr');
  const mirror = wrap.querySelector('.expr-mirror');
  const list = wrap.querySelector('[role=listbox]');
  const multiline = control.tagName === 'TEXTAREA';
  const announce = el('span', { class: 'visually-hidden', 'aria-live': 'polite' });
  wrap.append(announce);
  const state = { options: [], active: -1, word: null, error: null, quiet: false };

  function drawMirror() {
    const text = control.value;
    const bad = state.error && state.error.text === text ? state.error : null;
    if (!bad) mirror.replaceChildren(text, '\u200b');
    else {
      const mark = el('mark', { class: bad.start === bad.end ? 'bad at-end' : 'bad' }, text.slice(bad.start, bad.end) || ' ');
      mirror.replaceChildren(text.slice(0, bad.start), mark, text.slice(bad.end), '\u200b');
    }
    if (multiline) {
      control.style.height = 'auto';
      control.style.height = `${control.scrollHeight + control.offsetHeight - control.clientHeight}px`;
    }
    mirror.scrollTop = control.scrollTop;
    mirror.scrollLeft = control.scrollLeft;
  }

  // --- Completion ---------------------------------------------------------------------------

  function close() {
    state.options = [];
    state.active = -1;
    list.hidden = true;
    list.replaceChildren();
    control.removeAttribute('aria-activedescendant');
    if (!multiline) control.setAttribute('aria-expanded', 'false');
  }

  function matches(prefix) {
    const all = entries();
    const starting = all.filter((e) => e.name.startsWith(prefix));
    const containing = prefix.length >= 2 ? all.filter((e) => !e.name.startsWith(prefix) && e.name.includes(prefix)) : [];
    return [...starting, ...containing].slice(0, SHOWN);
  }

  function open(force = false) {
    const caret = control.selectionStart;
    const word = control.selectionEnd === caret ? nameAt(control.value, caret) : null;
    if (!word && !force) { close(); return; }
    const options = matches(word ? word.prefix : '');
    const typed = word && control.value.slice(word.start, word.end).toLowerCase();
    if (!options.length || (!force && options.length === 1 && options[0].name === typed)) { close(); return; }
    state.word = word || { start: caret, end: caret, prefix: '' };
    state.options = options;
    state.active = -1;
    list.replaceChildren(...options.map((entry, i) => {
      const option = el('li', { role: 'option', id: `${list.id}-${i}`, 'aria-selected': 'false', 'data-name': entry.name, title: entry.about },
        el('span', { class: 'c-name' }, entry.label),
        el('span', { class: 'c-kind' }, entry.kind === 'function' ? 'function' : `${entry.type}`),
        el('span', { class: 'c-about' }, entry.about));
      option.addEventListener('mousedown', (event) => event.preventDefault()); // keep the focus in the control
      option.addEventListener('click', () => accept(i));
      return option;
    }));
    list.hidden = false;
    if (!multiline) control.setAttribute('aria-expanded', 'true');
    announce.textContent = `${options.length} suggestion${options.length === 1 ? '' : 's'}: up and down arrows to choose, Enter to insert.`;
  }

  function activate(i) {
    state.active = (i + state.options.length) % state.options.length;
    for (const [n, option] of [...list.children].entries()) {
      option.setAttribute('aria-selected', String(n === state.active));
      if (n === state.active) option.scrollIntoView({ block: 'nearest' });
    }
    control.setAttribute('aria-activedescendant', `${list.id}-${state.active}`);
  }

  // Replaces text[start, end) with `text`, the caret `back` characters before its end; the edit
  // is announced as an input (so the screen is checked again) but opens no completion.
  function replace(start, end, text, back = 0) {
    control.focus();
    control.setRangeText(text, start, end, 'end');
    const caret = start + text.length - back;
    control.setSelectionRange(caret, caret);
    state.quiet = true;
    control.dispatchEvent(new Event('input', { bubbles: true }));
    state.quiet = false;
  }

  function accept(i) {
    const entry = state.options[i];
    const { start, end } = state.word;
    close();
    if (entry.kind === 'function' && control.value[end] !== '(') replace(start, end, `${entry.name}()`, 1);
    else replace(start, end, entry.name);
  }

  control.addEventListener('input', () => {
    if (state.error && state.error.text !== control.value) slot.classList.add('stale');
    drawMirror();
    if (!state.quiet) open();
  });
  control.addEventListener('keydown', (event) => {
    const shown = !list.hidden;
    if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
      if (!shown) {
        if (multiline || event.key === 'ArrowUp') return;
        open(true);
        if (list.hidden) return;
      }
      event.preventDefault();
      activate(state.active + (event.key === 'ArrowDown' ? 1 : state.active < 0 ? 0 : -1));
    } else if (event.key === ' ' && event.ctrlKey) {
      event.preventDefault();
      open(true);
    } else if (shown && event.key === 'Enter' && state.active >= 0) {
      event.preventDefault();
      accept(state.active);
    } else if (shown && (event.key === 'Escape' || event.key === 'Enter' || event.key === 'Tab')) {
      if (event.key === 'Escape') { event.preventDefault(); event.stopPropagation(); }
      close();
    }
  });
  control.addEventListener('blur', close);
  control.addEventListener('click', () => { if (!list.hidden) open(); });
  const follow = () => { mirror.scrollTop = control.scrollTop; mirror.scrollLeft = control.scrollLeft; };
  for (const type of ['scroll', 'keyup', 'mouseup', 'focus', 'blur']) control.addEventListener(type, follow);

  // --- Errors -------------------------------------------------------------------------------

  function clearError() {
    state.error = null;
    slot.hidden = true;
    slot.classList.remove('stale');
    slot.replaceChildren();
    control.removeAttribute('aria-invalid');
    drawMirror();
  }

  // Shows an INVALID_FILTER / INVALID_RANK_BY answer: the message, the suggestions (names as
  // buttons that replace the bad name) and the underline at details.position.
  function showError(error) {
    const text = control.value;
    const span = badSpan(text, error.details.position);
    state.error = { ...span, text };
    slot.classList.remove('stale');
    const message = el('p', { class: 'expr-message' }, error.message);
    slot.replaceChildren(message);
    const bad = text.slice(span.start, span.end);
    const names = error.suggestions.filter((s) => isName(s) && s !== bad.toLowerCase());
    const hints = error.suggestions.filter((s) => !names.includes(s) && !(isName(s) && s === bad.toLowerCase()));
    if (names.length) {
      const fixes = el('p', { class: 'suggestions' }, 'Did you mean: ');
      names.forEach((name, i) => {
        const fix = el('button', { type: 'button', class: 'suggestion', 'data-suggestion': name,
          'aria-label': `Replace ${bad} with ${name}` }, name);
        fix.addEventListener('click', () => {
          const now = badSpan(control.value, error.details.position);
          replace(now.start, /^[A-Za-z_]/.test(control.value.slice(now.start, now.end)) ? now.end : now.start, name);
        });
        fixes.append(...(i ? [' ', fix] : [fix]));
      });
      fixes.append('?');
      slot.append(fixes);
    }
    if (hints.length) slot.append(el('p', { class: 'suggestions' }, `Hint: ${hints.join('; ')}.`));
    slot.hidden = false;
    control.setAttribute('aria-invalid', 'true');
    drawMirror();
  }

  function set(text) {
    control.value = text;
    close();
    drawMirror();
  }

  drawMirror();
  new ResizeObserver(drawMirror).observe(control);
  return { showError, clearError, set, close };
}
