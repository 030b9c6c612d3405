// Who is here and who is typing, in the room on screen (issue 13, ephemeral signals).
//
// Receives: GET /rooms/<slug>/presence on every room load and every stream (re)connect;
//           presence.joined / presence.left and typing events ({room, user}, no cursor).
// Hands on: the "here" line (#presence) and the "… is typing…" line (#typing).
// If it fails: nothing is lost that matters: presence events are never replayed, so the
//           list is read again from the server on every (re)connect and room switch; a
//           typing signal missed is a name not shown for a few seconds.
import { api, roomUrl } from "./api.js";
import { element, shownName } from "./dom.js";

export const TYPING_SHOWN_MS = 5000; // a name stays this long after its last typing event
// A typing signal sent as the message was (the last keystroke, then Enter) can arrive after
// the message itself: one that comes this soon after the person's message is ignored.
const AFTER_MESSAGE_MS = 1500;

export class Presence {
  // `me`: the reader's name, or null. A signed-in reader's own stream carries the room, so
  // they are here; the server tells everyone else, not them (and records them within a
  // second of the stream opening, so an early GET may not list them yet).
  constructor(node, me) {
    this.node = node;
    this.me = me;
    this.room = null;
    this.online = new Set();
    this.asked = 0; // answers to an older question are dropped
  }

  async load(room) {
    this.room = room;
    const question = ++this.asked;
    const result = await api("GET", roomUrl(room, "presence"));
    if (!result.ok || question !== this.asked || room !== this.room) return;
    this.online = new Set(result.data.online);
    this.draw();
  }

  apply(name, data) {
    if (data.room !== this.room) return;
    if (name === "presence.joined") this.online.add(data.user);
    else this.online.delete(data.user);
    this.draw();
  }

  draw() {
    const names = Array.from(new Set([...this.online, ...(this.me ? [this.me] : [])])).sort();
    this.node.replaceChildren();
    this.node.hidden = !names.length;
    if (!names.length) return;
    this.node.append(element("span", "label", `${names.length} here: `));
    names.forEach((name, index) => {
      if (index) this.node.append(", ");
      const person = element("bdi", "person", shownName(name));
      person.dataset.user = name;
      this.node.append(person);
    });
  }
}

function typingText(names) {
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
  return `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]} are typing…`;
}

export class Typing {
  constructor(node) {
    this.node = node;
    this.room = null;
    this.timers = new Map(); // user -> timeout clearing them
    this.lastMessage = new Map(); // user -> when their last message arrived
  }

  show(room) {
    this.room = room;
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    this.draw();
  }

  typed(data) {
    if (data.room !== this.room) return;
    if (Date.now() - (this.lastMessage.get(data.user) || 0) < AFTER_MESSAGE_MS) return;
    clearTimeout(this.timers.get(data.user));
    this.timers.set(
      data.user,
      setTimeout(() => this.stopped(data.user), TYPING_SHOWN_MS),
    );
    this.draw();
  }

  // Their message arrived: no longer typing (and a late signal is not believed).
  spoke(user) {
    this.lastMessage.set(user, Date.now());
    if (this.lastMessage.size > 200) this.lastMessage.delete(this.lastMessage.keys().next().value);
    this.stopped(user);
  }

  // Their time ran out, or they spoke.
  stopped(user) {
    if (!this.timers.has(user)) return;
    clearTimeout(this.timers.get(user));
    this.timers.delete(user);
    this.draw();
  }

  draw() {
    const names = Array.from(this.timers.keys()).sort().map(shownName);
    this.node.textContent = names.length ? typingText(names) : "";
  }
}
