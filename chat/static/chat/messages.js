// The message list of the room on screen: rendering, applying changes, older history, the
// "new messages" divider and the "jump to latest" button.
//
// Receives: a room's page of history (reset), single messages from the stream, the history
//           API and our own sends (upsert).
// Hands on: the DOM of #messages; onBottom() when the reader reaches the newest message.
// If it fails: a change applied twice or out of order is harmless: upsert is keyed by
//           message id and never replaces a message with an older version of itself.
import { api, roomUrl } from "./api.js";
import { element, button, isolatedName, shownName } from "./dom.js";
import { renderText } from "./render.js";
import { applyReaction, reactionBar } from "./reactions.js";
import { regroup } from "./grouping.js";
import { startEdit, confirmDelete } from "./editing.js";

const NEAR_BOTTOM_PX = 80;

// How far along its life a message is: deleted beats edited beats created, a later edit
// beats an earlier one. Timestamps are ISO strings in one zone, so they compare as text.
function isOlder(candidate, shown) {
  const a = candidate.deleted_at ? 1 : 0;
  const b = shown.deleted_at ? 1 : 0;
  if (a !== b) return a < b;
  return (candidate.edited_at || "") < (shown.edited_at || "");
}

// The time of day in the reader's locale; the day is the separator above (grouping.js),
// and the full date and time is the element's title.
function formatTime(iso) {
  return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

export class MessageList {
  constructor({ user, list, scroller, olderButton, jumpButton, onBottom, onDirect }) {
    this.user = user; // {id, name, is_staff} or null
    this.list = list;
    this.scroller = scroller;
    this.olderButton = olderButton;
    this.jumpButton = jumpButton;
    this.onBottom = onBottom || (() => {});
    this.onDirect = onDirect; // a click on an author's name: open a DM (logged in only)
    this.items = new Map(); // message id -> <li>
    this.room = null;
    this.hasOlder = false;
    this.loadingOlder = false;
    this.batch = false; // while a page is put in: one regroup at its end
    olderButton.addEventListener("click", () => this.loadOlder());
    jumpButton.addEventListener("click", () => this.scrollToBottom());
    scroller.addEventListener("scroll", () => {
      if (scroller.scrollTop < 40) this.loadOlder();
      this.updateJump();
    });
  }

  // A new room on screen: its latest page, and a divider above its `unread` newest messages.
  reset(room, page, unread = 0) {
    this.room = room;
    this.items.clear();
    this.list.replaceChildren();
    this.batch = true;
    for (const message of page.messages) this.upsert(message);
    this.batch = false;
    this.hasOlder = page.has_more;
    this.olderButton.hidden = !this.hasOlder;
    this.markUnread(unread);
    regroup(this.list);
    this.scrollToBottom();
  }

  markUnread(count) {
    this.list.querySelector(".divider")?.remove();
    if (!count) return;
    const theirs = Array.from(this.list.querySelectorAll(":scope > li.message:not(.own)"));
    const first = theirs[Math.max(0, theirs.length - count)];
    if (!first) return;
    const divider = element("li", "divider", "New messages");
    divider.setAttribute("role", "separator");
    first.before(divider);
    regroup(this.list);
  }

  nearBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < NEAR_BOTTOM_PX;
  }

  scrollToBottom() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
    this.updateJump();
  }

  updateJump() {
    const bottom = this.nearBottom();
    this.jumpButton.hidden = bottom;
    if (bottom) this.onBottom();
  }

  canChange(message) {
    const user = this.user;
    return Boolean(user) && !message.deleted_at && (user.is_staff || message.sender_id === user.id);
  }

  render(message) {
    const item = element("li", "message");
    item.dataset.id = String(message.id);
    item.message = message;
    item.shown = JSON.stringify(message); // what the item shows; startEdit clears it
    if (this.user && message.sender_id === this.user.id) item.classList.add("own");
    if (message.deleted_at) item.classList.add("deleted");

    const meta = element("div", "meta");
    const author = message.author || "—";
    const direct = this.onDirect && message.author && message.sender_id && message.sender_id !== this.user?.id;
    if (direct) {
      // A link acting as a button: a message's <button>s are its controls (edit, delete,
      // reactions), its author's name is a way to their DMs.
      const name = element("a", "author dm");
      name.append(isolatedName(author));
      name.href = "#";
      name.setAttribute("role", "button");
      name.title = `Direct message ${author}`;
      name.addEventListener("click", (event) => {
        event.preventDefault();
        this.onDirect(message.author);
      });
      meta.append(name);
    } else {
      meta.append(element("bdi", "author", shownName(author)));
    }
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
    const text = element("div", "text");
    text.dir = "auto"; // its own direction (Arabic, Hebrew), isolated from the page's
    if (message.deleted_at) text.textContent = "message deleted";
    else text.append(renderText(message.text || "", this.user?.name));
    item.append(text);
    if (!message.deleted_at && (this.user || message.reactions?.length)) item.append(this.bar(message));

    if (this.canChange(message)) {
      const actions = element("div", "actions");
      const remove = button("delete", "Delete");
      remove.addEventListener("click", () => confirmDelete(this, item, remove));
      actions.append(button("edit", "Edit", () => startEdit(this, item)), remove);
      item.append(actions);
    }
    return item;
  }

  // Up-arrow in an empty send box: edit the reader's last message still shown. False when
  // there is none (the key then does what it always does).
  editLast() {
    const own = Array.from(this.items.values())
      .filter((item) => this.user && item.message.sender_id === this.user.id && this.canChange(item.message))
      .sort((a, b) => a.message.id - b.message.id);
    const last = own[own.length - 1];
    if (!last || last.classList.contains("editing")) return false;
    last.scrollIntoView({ block: "nearest" });
    startEdit(this, last);
    return true;
  }

  bar(message) {
    return reactionBar(this.room, message, this.user?.name || null, (reactions) =>
      this.setReactions(message.id, reactions),
    );
  }

  // A reaction.added / reaction.removed event (stream or log) for a message on screen.
  react(name, data) {
    if (data.room !== this.room) return;
    const item = this.items.get(data.message_id);
    if (!item || item.message.deleted_at) return;
    this.setReactions(data.message_id, applyReaction(item.message.reactions, name, data));
  }

  setReactions(id, reactions) {
    const item = this.items.get(id);
    if (!item) return;
    item.message = { ...item.message, reactions };
    const old = item.querySelector(":scope > .reactions");
    if (item.classList.contains("editing") || !old) return; // drawn when the editor closes
    item.shown = JSON.stringify(item.message);
    const fresh = this.bar(item.message);
    const focused = old.contains(document.activeElement) ? document.activeElement.dataset.emoji : null;
    old.replaceWith(fresh);
    if (focused) fresh.querySelector(`[data-emoji="${CSS.escape(focused)}"]`)?.focus();
  }

  // The send box, or the list when there is none: where focus goes when its place is gone.
  focusComposer() {
    (document.querySelector("#send textarea") || this.scroller).focus();
  }

  // Insert or replace by id, keeping the list in id order (the order a reload shows).
  upsert(message) {
    if (!this.room || (message.room && message.room !== this.room)) return;
    const existing = this.items.get(message.id);
    if (existing && isOlder(message, existing.message)) return; // a late copy of the past
    if (message.deleted_at) message = { ...message, reactions: [] }; // they went with it
    else if (!("reactions" in message)) {
      // A stream event carries the message's fields, not its reactions: keep those shown.
      message = { ...message, reactions: existing?.message.reactions || [] };
    }
    if (existing && existing.classList.contains("editing") && !message.deleted_at) {
      existing.message = message; // don't yank the editor away; Save sends its own text
      return;
    }
    if (existing && existing.shown === JSON.stringify(message)) {
      return; // the stream's echo of our own POST or PATCH: nothing to redraw
    }
    const stick = this.nearBottom();
    const item = this.render(message);
    if (existing) {
      // A keyboard user on this message's Edit or Delete keeps their place when it is
      // redrawn; if the control is gone (the message was deleted), focus goes to the send box.
      const focused = existing.contains(document.activeElement) ? document.activeElement : null;
      existing.replaceWith(item);
      if (focused) {
        const name = focused.classList[0];
        const same = name ? item.querySelector(`button.${name}`) : null;
        if (same) same.focus();
        else this.focusComposer();
      }
    } else {
      let after = null;
      for (const node of Array.from(this.list.children).reverse()) {
        if (node.dataset.id && Number(node.dataset.id) < message.id) {
          after = node;
          break;
        }
      }
      if (after) after.after(item);
      else this.list.prepend(item);
    }
    this.items.set(message.id, item);
    if (!this.batch) regroup(this.list);
    if (stick && !existing) this.scrollToBottom();
    else this.updateJump();
  }

  async loadOlder() {
    if (!this.hasOlder || this.loadingOlder || !this.items.size) return;
    this.loadingOlder = true;
    const room = this.room;
    const oldest = Math.min(...this.items.keys());
    const result = await api("GET", `${roomUrl(room, "messages")}?before=${oldest}&limit=50`);
    this.loadingOlder = false;
    if (!result.ok || room !== this.room) return;
    const height = this.scroller.scrollHeight;
    this.batch = true;
    for (const message of result.data.messages) this.upsert(message);
    this.batch = false;
    regroup(this.list);
    this.scroller.scrollTop += this.scroller.scrollHeight - height; // keep the view where it was
    this.hasOlder = result.data.has_more;
    this.olderButton.hidden = !this.hasOlder;
  }
}
