// Calls to technic's API with the page's session, and the API's errors as messages.

const csrfToken = () => document.querySelector('meta[name="csrf-token"]').content;

// An API error: `code`, `message`, `suggestions`, `details` as the API answered them, or a
// NETWORK_ERROR when no answer came.
export class ApiError extends Error {
  constructor(status, body) {
    super(body.message);
    this.status = status;
    this.code = body.code;
    this.suggestions = body.suggestions || [];
    this.details = body.details || {};
  }
}

// The JSON answer of `method url` (with `body` as JSON); throws ApiError for any error answer.
export async function call(method, url, body) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET') headers['X-CSRFToken'] = csrfToken();
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(url, {
      method, headers, credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError(0, {
      code: 'NETWORK_ERROR',
      message: `The server could not be reached (${err.message}).`,
      suggestions: ['Check your network connection, then try again'],
    });
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = data && data.error ? data.error
      : { code: `HTTP_${response.status}`, message: `The server answered ${response.status} ${response.statusText}.` };
    if (response.status === 401 || error.code === 'NOT_AUTHENTICATED') {
      error.suggestions = ['Your session has ended: log in again'];
    }
    throw new ApiError(response.status, error);
  }
  return data;
}

// Fills `element` with the error's message and suggestions and shows it.
export function showError(element, error, lead = '') {
  element.replaceChildren();
  const message = document.createElement('p');
  const strong = document.createElement('strong');
  strong.textContent = lead || error.code;
  message.append(strong, ` ${error.message}`);
  element.append(message);
  if (error.suggestions && error.suggestions.length) {
    const next = document.createElement('p');
    next.className = 'suggestions';
    next.textContent = `What to do next: ${error.suggestions.join('; ')}.`;
    element.append(next);
  }
  if (error.status === 401 || error.code === 'NOT_AUTHENTICATED') {
    const login = document.createElement('a');
    login.href = `/accounts/login/?next=${encodeURIComponent(location.pathname)}`;
    login.textContent = 'Log in';
    element.append(login);
  }
  element.hidden = false;
}

// `n` formatted with `digits` decimals, or a dash for a missing value.
export function fmt(n, digits = 2) {
  return n === null || n === undefined || Number.isNaN(n) ? '—'
    : Number(n).toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === 'class') node.className = value;
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}
