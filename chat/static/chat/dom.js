// Building elements from data. User text only ever goes in as textContent (never innerHTML):
// a message is text, whoever wrote it (psql included), and the CSP is the second wall.

export function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// Names come from anyone (psql writes any author): bidirectional controls in one are shown
// as their code points, not obeyed, so "adm\u202Enim" cannot pass for "admmin"; callers put
// the name in a <bdi> (isolatedName), so it cannot reorder the line around it either.
const BIDI_CONTROLS = /[\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/g;
export function shownName(name) {
  return name.replace(BIDI_CONTROLS, (c) => `[U+${c.codePointAt(0).toString(16).toUpperCase()}]`);
}

export function isolatedName(name) {
  return element("bdi", "", shownName(name));
}

export function button(className, text, onClick) {
  const node = element("button", className, text);
  node.type = "button";
  if (onClick) node.addEventListener("click", onClick);
  return node;
}

// "@name" at the start or after a character that cannot be part of a username, as the
// database finds them (chat_mentioned_names, migration 0007); a trailing "." or "," is
// punctuation, not part of the name. Django's usernames are [\w.@+-]+.
const MENTION = /(^|[^\p{L}\p{N}_.@+-])@([\p{L}\p{N}_.@+-]+)/gu;

function splitName(raw) {
  const name = raw.replace(/[.@+-]+$/u, "");
  return [name || raw, raw.slice((name || raw).length)];
}

export function mentionedNames(text) {
  const names = new Set();
  for (const match of text.matchAll(MENTION)) {
    names.add(match[2]);
    names.add(splitName(match[2])[0]);
  }
  return names;
}

// The text as a fragment: plain text nodes, each mention a <span class="mention"> (and
// "mention me" when it names the reader), all built with textContent.
export function textWithMentions(text, me) {
  const fragment = document.createDocumentFragment();
  let at = 0;
  for (const match of text.matchAll(MENTION)) {
    const start = match.index + match[1].length;
    const [name, rest] = splitName(match[2]);
    fragment.append(document.createTextNode(text.slice(at, start)));
    const span = element("span", "mention", `@${name}`);
    if (me && name === me) span.classList.add("me");
    fragment.append(span);
    at = start + 1 + name.length;
    if (rest) {
      fragment.append(document.createTextNode(rest));
      at += rest.length;
    }
  }
  fragment.append(document.createTextNode(text.slice(at)));
  return fragment;
}
