// The send box: Enter sends, Shift+Enter is a new line (on a touch screen Enter is a new
// line and the button sends); the draft survives every failure, a reload and a room switch.
//
// Receives: what the user types; the room on screen (room()); the user's id (drafts are
//           kept per user and room in localStorage).
// Hands on: POST /rooms/<slug>/messages with an Idempotency-Key; the created message to
//           onSent (the stream brings it too; the list's upsert makes that harmless);
//           POST /rooms/<slug>/typing while the user types.
// If it fails: a send that may not be final (no answer, a 5xx) is retried with backoff under
//           the SAME key: if the first attempt did land, the server answers the retry with
//           that same message and writes nothing, so a retried send never shows twice.
//           A 429 is shown with its wait; any other refusal is shown; the draft stays.
import { api, newKey, roomUrl, sleep } from "./api.js";

const RETRY_MIN_MS = 1000;
const SEND_RETRIES = 5; // after the first attempt: 1 + 2 + 4 + 8 + 15 s, then give up
const SEND_RETRY_MAX_MS = 15000;
const TYPING_EVERY_MS = 3000;
const MAX_LENGTH = 4000; // the server's limit (and the textarea's maxlength)
const COUNT_FROM = 3500; // the characters left are shown from here on
// No hover and a coarse pointer: a phone or tablet, whose Enter key is the only new line.
const TOUCH = "(hover: none) and (pointer: coarse)"; // "typing" is posted at most this often (the server throttles too)

// "42 s", "15 min", "2 h": a wait said as a person would (the server's wording too).
function waitText(seconds) {
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${Math.ceil(seconds / 60)} min`;
  return `${Math.ceil(seconds / 3600)} h`;
}

// Drafts per user and room. localStorage may be missing or full (private windows): then a
// draft lives only as long as the page, as before.
function draftKey(me, slug) {
  return `pgchat:draft:${me}:${slug}`;
}
function loadDraft(me, slug) {
  try {
    return window.localStorage.getItem(draftKey(me, slug)) || "";
  } catch (err) {
    return "";
  }
}
function saveDraft(me, slug, text) {
  try {
    if (text) window.localStorage.setItem(draftKey(me, slug), text);
    else window.localStorage.removeItem(draftKey(me, slug));
  } catch (err) {
    // not kept: see above
  }
}

export function setupComposer(form, { room, me, onSent, onEditLast }) {
  const box = form.querySelector("textarea");
  const problem = document.getElementById("send-error");
  const submit = form.querySelector("button");
  const counter = document.getElementById("send-count");
  const hint = document.getElementById("send-hint");
  const touch = window.matchMedia(TOUCH);
  let pending = null; // {room, text, key}: a send not known to have landed; its retry reuses the key
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
    submit.disabled = false;
  }

  // Over the rate limit: say how long to wait, counting down; the draft stays in the box.
  function sayLimited(seconds) {
    let left = Math.max(1, seconds);
    const text = () => `You are sending too fast; try again in ${waitText(left)}.`;
    say(text(), "limited");
    submit.disabled = true;
    countdown = setInterval(() => {
      left -= 1;
      if (left > 0) problem.textContent = text();
      else quiet();
    }, 1000);
  }

  // POST the text until it lands or fails for good; retries keep the key.
  async function deliver(slug, text) {
    if (!pending || pending.text !== text || pending.room !== slug) pending = { room: slug, text, key: newKey() };
    const headers = { "Idempotency-Key": pending.key };
    let delay = RETRY_MIN_MS;
    for (let attempt = 0; ; attempt += 1) {
      const result = await api("POST", roomUrl(slug, "messages"), { text }, headers);
      const mayPass = result.status === 0 || result.status >= 500;
      if (!mayPass || attempt === SEND_RETRIES) return result;
      const wait = Math.max(delay, result.retryAfter * 1000);
      say(`Not sent yet (${result.data.error}); trying again in ${Math.round(wait / 1000)} s…`, "retrying");
      await sleep(wait);
      delay = Math.min(SEND_RETRY_MAX_MS, delay * 2);
    }
  }

  // The box grows with its text up to its CSS max-height (then it scrolls); the characters
  // left are shown near the limit. Set through the CSSOM, which the CSP allows.
  function fit() {
    box.style.height = "auto";
    box.style.height = `${box.scrollHeight + box.offsetHeight - box.clientHeight}px`;
    const left = MAX_LENGTH - box.value.length;
    counter.hidden = box.value.length < COUNT_FROM;
    counter.textContent = `${left} characters left`;
    counter.dataset.kind = left <= 0 ? "full" : "near";
  }
  function showHint() {
    hint.textContent = touch.matches
      ? "Enter for a new line; the button sends"
      : "Enter to send, Shift+Enter for a new line";
  }
  touch.addEventListener("change", showHint);
  showHint();
  box.addEventListener("input", () => {
    saveDraft(me, room(), box.value);
    fit();
  });
  box.value = loadDraft(me, room());
  fit();

  // Others see "… is typing": one POST per 3 s of typing at most, fire and forget (a
  // lost one is a name not shown for a moment).
  let typedAt = 0;
  box.addEventListener("input", () => {
    const now = Date.now();
    if (!box.value.trim() || now - typedAt < TYPING_EVERY_MS) return;
    typedAt = now;
    api("POST", roomUrl(room(), "typing"));
  });

  box.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && !touch.matches) {
      event.preventDefault();
      form.requestSubmit();
    } else if (event.key === "ArrowUp" && !box.value && !event.isComposing && onEditLast) {
      if (onEditLast()) event.preventDefault(); // edit my last message, as chat apps do
    }
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = box.value;
    if (!text.trim() || submit.disabled) return;
    const slug = room();
    submit.disabled = true;
    const result = await deliver(slug, text);
    submit.disabled = false;
    if (result.ok) {
      pending = null;
      if (box.value === text) box.value = ""; // not what was typed while it was retrying
      if (loadDraft(me, slug) === text) saveDraft(me, slug, "");
      fit();
      quiet();
      onSent(result.data);
    } else if (result.status === 429) {
      sayLimited(result.retryAfter || 1); // the text stays in the box
    } else {
      say(result.data.error, "error"); // the text stays in the box
    }
    box.focus();
  });

  // Another room on screen: its name in the placeholder, no stale error.
  return {
    switchTo(title) {
      typedAt = 0;
      box.value = loadDraft(me, room()); // the old room's draft was saved as it was typed
      fit();
      box.placeholder = `Message ${title}`;
      if (!submit.disabled) problem.hidden = true;
    },
  };
}
