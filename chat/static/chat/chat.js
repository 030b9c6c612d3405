// Hop 5: the browser end of the data path.
//
// Upstream:   GET /rooms/<slug>/events (chat/views.py), an SSE stream of message.created,
//             message.updated and message.deleted, each with `id: <cursor>`.
// Downstream: the message list on the page.
// On failure: EventSource reconnects by itself and sends Last-Event-ID, so the server replays
//             what we missed. When it gives up (a 4xx, say), we open a new stream from our
//             own cursor with ?last_event_id=, after a backoff. Nothing is lost either way.
//
// The page was rendered with history up to `boot.cursor`; the first stream starts exactly
// there. Every event is applied as an upsert keyed by message id, so a duplicate or an
// event for a message we already have is harmless. Text is only ever set as textContent.
//
// Sending: each message gets an Idempotency-Key, and a send that fails for a reason that
// may not be final (no answer, a 5xx) is retried with backoff under the SAME key: if the
// first attempt did land, the server answers the retry with that same message and writes
// nothing, so a retried send never shows twice. A 429 is shown with its wait; the draft stays.
"use strict";

(() => {
  // The fields of a message (chat/events.py MESSAGE_FIELDS; tests pin the two together).
  const MESSAGE_FIELDS = ["id", "room", "author", "sender_id", "text", "created_at", "edited_at", "deleted_at"];
  const EVENTS = ["message.created", "message.updated", "message.deleted"];
  const RETRY_MIN_MS = 1000;
  const RETRY_MAX_MS = 30000;
  const SEND_RETRIES = 5; // after the first attempt: 1 + 2 + 4 + 8 + 15 s, then give up
  const SEND_RETRY_MAX_MS = 15000;

  const boot = JSON.parse(document.getElementById("chat-boot").textContent);
  const list = document.getElementById("messages");
  const scroller = document.getElementById("scroller");
  const connection = document.getElementById("connection");
  const olderButton = document.getElementById("load-older");
  const sendForm = document.getElementById("send");

  const items = new Map(); // message id -> <li>
  let cursor = boot.cursor; // the last change applied; the stream resumes after it
  let hasOlder = boot.has_more;
  let source = null;
  let retryMs = RETRY_MIN_MS;
  let retryTimer = null;

  // -- talking to the server ------------------------------------------------------------

  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  async function api(method, url, body, headers = {}) {
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
      return { ok: false, status: 0, data: { error: "network error: the server did not answer" } };
    }
    let data = null;
    try {
      data = await response.json();
    } catch (err) {
      data = { error: `HTTP ${response.status}` };
    }
    const retryAfter = Number.parseInt(response.headers.get("Retry-After") || "", 10);
    return { ok: response.ok, status: response.status, data, retryAfter: retryAfter > 0 ? retryAfter : 0 };
  }

  // A fresh Idempotency-Key. crypto.randomUUID exists only in a secure context (https, or
  // localhost): over plain http elsewhere, build the same version-4 UUID from random bytes.
  function newKey() {
    if (window.crypto.randomUUID) return window.crypto.randomUUID();
    const b = window.crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // -- rendering ------------------------------------------------------------------------

  function canChange(message) {
    const user = boot.user;
    return Boolean(user) && !message.deleted_at && (user.is_staff || message.sender_id === user.id);
  }

  function formatTime(iso) {
    const when = new Date(iso);
    const sameDay = when.toDateString() === new Date().toDateString();
    const time = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    return sameDay ? time : `${when.toLocaleDateString()} ${time}`;
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // Names come from anyone (psql writes any author): bidirectional controls in one are
  // shown as their code points, not obeyed, so "adm\u202Enim" cannot pass for "admmin";
  // the name sits in a <bdi>, so it cannot reorder the line around it either.
  const BIDI_CONTROLS = /[\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/g;
  function shownName(name) {
    return name.replace(BIDI_CONTROLS, (c) => `[U+${c.codePointAt(0).toString(16).toUpperCase()}]`);
  }

  function render(message) {
    const item = element("li", "message");
    item.dataset.id = String(message.id);
    item.message = message;
    item.shown = JSON.stringify(message); // what the item shows; startEdit clears it
    if (boot.user && message.sender_id === boot.user.id) item.classList.add("own");
    if (message.deleted_at) item.classList.add("deleted");

    const meta = element("div", "meta");
    meta.append(element("bdi", "author", shownName(message.author || "—")));
    if (message.created_at) {
      const time = element("time", "time", formatTime(message.created_at));
      time.dateTime = message.created_at;
      time.title = new Date(message.created_at).toLocaleString();
      meta.append(time);
    }
    if (message.edited_at && !message.deleted_at) {
      const edited = element("span", "edited", "edited");
      edited.title = `edited ${new Date(message.edited_at).toLocaleString()}`;
      meta.append(edited);
    }
    item.append(meta);
    const text = element("p", "text", message.deleted_at ? "message deleted" : message.text);
    text.dir = "auto"; // its own direction (Arabic, Hebrew), isolated from the page's
    item.append(text);

    if (canChange(message)) {
      const actions = element("div", "actions");
      const edit = element("button", "edit", "Edit");
      edit.type = "button";
      edit.addEventListener("click", () => startEdit(item));
      const remove = element("button", "delete", "Delete");
      remove.type = "button";
      remove.addEventListener("click", () => confirmDelete(item, remove));
      actions.append(edit, remove);
      item.append(actions);
    }
    return item;
  }

  function nearBottom() {
    return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
  }

  // The send box, or the list when there is none: where focus goes when its place is gone.
  function focusComposer() {
    (sendForm ? sendForm.querySelector("textarea") : scroller).focus();
  }

  // Insert or replace by id, keeping the list in id order (the order a reload shows).
  function upsert(message) {
    const existing = items.get(message.id);
    if (existing && existing.classList.contains("editing") && !message.deleted_at) {
      existing.message = message; // don't yank the editor away; Save sends its own text
      return;
    }
    if (existing && existing.shown === JSON.stringify(message)) {
      return; // the stream's echo of our own POST or PATCH: nothing to redraw
    }
    const stick = nearBottom();
    const item = render(message);
    if (existing) {
      // A keyboard user on this message's Edit or Delete keeps their place when it is
      // redrawn; if the control is gone (the message was deleted), focus goes to the send box.
      const focused = existing.contains(document.activeElement) ? document.activeElement : null;
      existing.replaceWith(item);
      if (focused) {
        const name = focused.classList[0];
        const same = name ? item.querySelector(`button.${name}`) : null;
        if (same) same.focus();
        else focusComposer();
      }
    } else {
      let after = null;
      for (const node of Array.from(list.children).reverse()) {
        if (Number(node.dataset.id) < message.id) {
          after = node;
          break;
        }
      }
      if (after) after.after(item);
      else list.prepend(item);
    }
    items.set(message.id, item);
    if (stick && !existing) scroller.scrollTop = scroller.scrollHeight;
  }

  // -- editing and deleting -------------------------------------------------------------

  function startEdit(item) {
    const message = item.message;
    item.classList.add("editing");
    item.shown = null; // it shows an editor now: the next upsert must redraw it
    const form = element("form", "edit-form");
    const box = element("textarea");
    box.value = message.text;
    box.maxLength = 4000;
    box.setAttribute("aria-label", "Edit message");
    const save = element("button", "save", "Save");
    save.type = "submit";
    const cancel = element("button", "cancel", "Cancel");
    cancel.type = "button";
    const problem = element("p", "error");
    problem.setAttribute("role", "alert");
    problem.hidden = true;
    form.append(box, save, cancel, problem);
    item.querySelector(".text").replaceWith(form);
    item.querySelector(".actions")?.remove();

    const finish = () => {
      item.classList.remove("editing");
      upsert(item.message);
      items.get(message.id)?.querySelector(".edit")?.focus();
    };
    cancel.addEventListener("click", finish);
    box.addEventListener("keydown", (event) => {
      if (event.key === "Escape") finish();
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const result = await api("PATCH", `${boot.urls.messages}/${message.id}`, { text: box.value });
      if (result.ok) {
        item.message = result.data;
        finish();
      } else {
        problem.textContent = result.data.error;
        problem.hidden = false;
      }
    });
    box.focus();
  }

  function confirmDelete(item, button) {
    if (button.dataset.armed !== "yes") {
      button.dataset.armed = "yes"; // a second press deletes: no modal dialog needed
      button.textContent = "Really delete?";
      setTimeout(() => {
        button.dataset.armed = "";
        button.textContent = "Delete";
      }, 5000);
      return;
    }
    api("DELETE", `${boot.urls.messages}/${item.message.id}`).then((result) => {
      if (result.ok) upsert(result.data);
      else button.textContent = result.data.error;
    });
  }

  // -- older history --------------------------------------------------------------------

  let loadingOlder = false;
  async function loadOlder() {
    if (!hasOlder || loadingOlder) return;
    loadingOlder = true;
    const oldest = Math.min(...items.keys());
    const result = await api("GET", `${boot.urls.messages}?before=${oldest}&limit=50`);
    loadingOlder = false;
    if (!result.ok) return;
    const height = scroller.scrollHeight;
    for (const message of result.data.messages) upsert(message);
    scroller.scrollTop += scroller.scrollHeight - height; // keep the view where it was
    hasOlder = result.data.has_more;
    olderButton.hidden = !hasOlder;
  }

  // -- the live stream ------------------------------------------------------------------

  function setConnection(state, text) {
    connection.dataset.state = state;
    connection.textContent = text || state;
  }

  function onEvent(event) {
    const seq = Number(event.lastEventId);
    if (!(seq > cursor)) return; // already applied
    cursor = seq;
    upsert(JSON.parse(event.data));
  }

  function connect() {
    clearTimeout(retryTimer);
    const url = new URL(boot.urls.events, window.location.href);
    url.searchParams.set("last_event_id", String(cursor));
    source = new EventSource(url);
    source.addEventListener("open", () => {
      retryMs = RETRY_MIN_MS;
      setConnection("connected");
    });
    for (const name of EVENTS) source.addEventListener(name, onEvent);
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CONNECTING) {
        setConnection(navigator.onLine ? "reconnecting" : "offline", navigator.onLine ? "reconnecting…" : "offline");
        return;
      }
      source.close(); // the browser gave up (e.g. an HTTP error): find out why, then retry
      setConnection(navigator.onLine ? "reconnecting" : "offline", navigator.onLine ? "reconnecting…" : "offline");
      retryTimer = setTimeout(recover, retryMs);
      retryMs = Math.min(RETRY_MAX_MS, retryMs * 2);
    });
  }

  async function recover() {
    const probe = await api("GET", `${boot.urls.messages}?after=${cursor}&limit=1`);
    if (probe.status === 400) {
      window.location.reload(); // our cursor is no longer valid here (the room was reset)
    } else if (probe.status === 403 || probe.status === 404) {
      setConnection("offline", `offline: ${probe.data.error}`);
    } else {
      connect();
    }
  }

  window.addEventListener("online", () => {
    if (!source || source.readyState === EventSource.CLOSED) connect();
  });
  window.addEventListener("offline", () => setConnection("offline"));

  // -- sending --------------------------------------------------------------------------

  if (sendForm) {
    const box = sendForm.querySelector("textarea");
    const problem = document.getElementById("send-error");
    const button = sendForm.querySelector("button");
    let pending = null; // {text, key}: a send not known to have landed; its retry reuses the key
    let countdown = null;

    function say(text, kind) {
      clearInterval(countdown);
      problem.textContent = text;
      problem.dataset.kind = kind;
      problem.hidden = false;
    }

    function quiet() {
      clearInterval(countdown);
      problem.hidden = true;
      button.disabled = false;
    }

    // "42 s", "15 min", "2 h": a wait said as a person would (the server's wording too).
    function waitText(seconds) {
      if (seconds < 120) return `${seconds} s`;
      if (seconds < 7200) return `${Math.ceil(seconds / 60)} min`;
      return `${Math.ceil(seconds / 3600)} h`;
    }

    // Over the rate limit: say how long to wait, counting down; the draft stays in the box.
    function sayLimited(seconds) {
      let left = Math.max(1, seconds);
      const text = () => `You are sending too fast; try again in ${waitText(left)}.`;
      say(text(), "limited");
      button.disabled = true;
      countdown = setInterval(() => {
        left -= 1;
        if (left > 0) problem.textContent = text();
        else quiet();
      }, 1000);
    }

    // POST the text until it lands or fails for good; retries keep the key.
    async function deliver(text) {
      if (!pending || pending.text !== text) pending = { text, key: newKey() };
      const headers = { "Idempotency-Key": pending.key };
      let delay = RETRY_MIN_MS;
      for (let attempt = 0; ; attempt += 1) {
        const result = await api("POST", boot.urls.messages, { text }, headers);
        const mayPass = result.status === 0 || result.status >= 500;
        if (!mayPass || attempt === SEND_RETRIES) return result;
        const wait = Math.max(delay, result.retryAfter * 1000);
        say(`Not sent yet (${result.data.error}); trying again in ${Math.round(wait / 1000)} s…`, "retrying");
        await sleep(wait);
        delay = Math.min(SEND_RETRY_MAX_MS, delay * 2);
      }
    }

    box.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        sendForm.requestSubmit();
      }
    });
    sendForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const text = box.value;
      if (!text.trim() || button.disabled) return;
      button.disabled = true;
      const result = await deliver(text);
      button.disabled = false;
      if (result.ok) {
        pending = null;
        if (box.value === text) box.value = ""; // not what was typed while it was retrying
        quiet();
        upsert(result.data); // the stream brings it too; the upsert makes that harmless
        scroller.scrollTop = scroller.scrollHeight;
      } else if (result.status === 429) {
        sayLimited(result.retryAfter || 1); // the text stays in the box
      } else {
        say(result.data.error, "error"); // the text stays in the box
      }
      box.focus();
    });
  }

  // -- start ----------------------------------------------------------------------------

  for (const message of boot.messages) upsert(message);
  olderButton.hidden = !hasOlder;
  olderButton.addEventListener("click", loadOlder);
  scroller.addEventListener("scroll", () => {
    if (scroller.scrollTop < 40) loadOlder();
  });
  scroller.scrollTop = scroller.scrollHeight;
  window.pgchat = { MESSAGE_FIELDS, cursor: () => cursor }; // for tests and curious people
  connect();
})();
