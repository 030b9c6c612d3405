// Talking to the server: fetch() with the session and CSRF token, JSON both ways.
//
// Every call answers {ok, status, data, retryAfter}; it never throws, so a caller has one
// shape to look at. No answer at all is status 0 with an {error} like the server's own.

export function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

export async function api(method, url, body, headers = {}) {
  const options = {
    method,
    headers: { Accept: "application/json", "X-CSRFToken": csrfToken(), ...headers },
    credentials: "same-origin",
  };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, options);
  } catch (err) {
    return { ok: false, status: 0, data: { error: "network error: the server did not answer" }, retryAfter: 0 };
  }
  let data = null;
  if (response.status !== 204) {
    try {
      data = await response.json();
    } catch (err) {
      data = { error: `HTTP ${response.status}` };
    }
  }
  const retryAfter = Number.parseInt(response.headers.get("Retry-After") || "", 10);
  return { ok: response.ok, status: response.status, data, retryAfter: retryAfter > 0 ? retryAfter : 0 };
}

// The project's URL scheme (DESIGN.md, "HTTP"): built from a slug, never from user text.
export const roomUrl = (slug, tail = "") => `/rooms/${encodeURIComponent(slug)}/${tail}`;

// A fresh Idempotency-Key. crypto.randomUUID exists only in a secure context (https, or
// localhost): over plain http elsewhere, build the same version-4 UUID from random bytes.
export function newKey() {
  if (window.crypto.randomUUID) return window.crypto.randomUUID();
  const b = window.crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
