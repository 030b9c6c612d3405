// Reactions under a message: counts, the reader's own highlighted, who reacted on hover, a
// click toggles, and a small palette to add one.
//
// Receives: a message's `reactions` ([{emoji, count, users}], from the history API and the
//           page) and reaction.added / reaction.removed events ({room, message_id, emoji,
//           user}) from the stream or from the history API's changes.
// Hands on: POST / DELETE to /rooms/<slug>/messages/<id>/reactions; the new list of a
//           message's reactions to the message list, which redraws the bar.
// If it fails: a click that fails changes nothing on screen (it is applied only when the
//           server said yes). An event is applied as a set operation on (emoji, user): an
//           "added" for someone already counted, or a "removed" for someone not there, is a
//           no-op, so the history's counts and an event the stream brings again (a resume,
//           a new leader tab, a fill from the log) never count twice; the stream brings a
//           message's changes in order, so the last one for (emoji, user) wins. Exact while
//           `users` lists everyone (the server lists the first 20); past that the count may
//           drift by the rare repeated event until the room is loaded again.
import { api, roomUrl } from "./api.js";
import { element, button } from "./dom.js";

export const PALETTE = ["👍", "❤️", "😂", "🎉", "😮", "😢"];

// A new reactions list with one event applied (never changes the one given).
export function applyReaction(reactions, name, { emoji, user }) {
  const list = (reactions || []).map((r) => ({ ...r, users: [...r.users] }));
  let entry = list.find((r) => r.emoji === emoji);
  if (name === "reaction.added") {
    if (!entry) {
      entry = { emoji, count: 0, users: [] };
      list.push(entry);
    }
    if (!entry.users.includes(user)) {
      entry.users.push(user);
      entry.count += 1;
    }
  } else if (entry && entry.users.includes(user)) {
    entry.users = entry.users.filter((u) => u !== user);
    entry.count -= 1;
  }
  return list.filter((r) => r.count > 0);
}

function whoReacted(entry) {
  const more = entry.count - entry.users.length;
  return more > 0 ? `${entry.users.join(", ")} and ${more} more` : entry.users.join(", ");
}

// The bar under a message. `me` is the reader's username (null: anonymous, read only);
// `onChange(reactions)` gets the list after a toggle the server accepted.
export function reactionBar(room, message, me, onChange) {
  const bar = element("div", "reactions");
  const url = `${roomUrl(room, "messages")}/${message.id}/reactions`;
  const reactions = message.reactions || [];

  async function toggle(emoji, control) {
    const mine = reactions.some((r) => r.emoji === emoji && r.users.includes(me));
    control.disabled = true;
    const result = mine
      ? await api("DELETE", `${url}/${encodeURIComponent(emoji)}`)
      : await api("POST", url, { emoji });
    control.disabled = false;
    if (!result.ok) {
      control.title = result.data.error;
      return;
    }
    const name = mine ? "reaction.removed" : "reaction.added";
    onChange(applyReaction(reactions, name, { emoji, user: me }));
  }

  for (const entry of reactions) {
    const mine = Boolean(me) && entry.users.includes(me);
    const chip = element("button", mine ? "reaction mine" : "reaction");
    chip.type = "button";
    chip.dataset.emoji = entry.emoji;
    chip.append(element("span", "emoji", entry.emoji), element("span", "count", String(entry.count)));
    chip.title = whoReacted(entry);
    chip.setAttribute("aria-label", `${entry.emoji} ${entry.count}: ${chip.title}`);
    if (me) {
      chip.setAttribute("aria-pressed", mine ? "true" : "false");
      chip.addEventListener("click", () => toggle(entry.emoji, chip));
    } else {
      chip.disabled = true;
    }
    bar.append(chip);
  }

  if (me) {
    const add = button("add-reaction", "☺+");
    add.title = "Add reaction";
    add.setAttribute("aria-label", "Add reaction");
    add.setAttribute("aria-expanded", "false");
    const palette = element("div", "palette");
    palette.setAttribute("role", "group");
    palette.setAttribute("aria-label", "Reactions");
    palette.hidden = true;
    for (const emoji of PALETTE) {
      const pick = button("pick", emoji);
      pick.dataset.emoji = emoji;
      pick.addEventListener("click", () => {
        palette.hidden = true;
        const mine = reactions.some((r) => r.emoji === emoji && r.users.includes(me));
        if (!mine) toggle(emoji, pick);
      });
      palette.append(pick);
    }
    add.addEventListener("click", () => {
      palette.hidden = !palette.hidden;
      add.setAttribute("aria-expanded", String(!palette.hidden));
      if (!palette.hidden) palette.querySelector("button").focus();
    });
    palette.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        palette.hidden = true;
        add.focus();
      }
    });
    bar.append(add, palette);
  }
  return bar;
}
