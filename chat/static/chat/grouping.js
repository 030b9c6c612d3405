// A conversation, not a log: day separators, and one author's consecutive messages grouped.
//
// Receives: the message list's <li class="message"> items (in id order), each with its
//           message (`item.message`: author, sender_id, created_at).
// Hands on: <li class="day" role="separator"> before each day's first message ("Today",
//           "Yesterday", a date, in the reader's locale and zone); the class "grouped" on a
//           message that follows one by the same author within GROUP_MS on the same day
//           (its author and time are shown once, on the first; the time on hover).
// If it fails: nothing is lost; it is drawn again from the items after every change.

export const GROUP_MS = 5 * 60 * 1000;

function dayKey(when) {
  return `${when.getFullYear()}-${when.getMonth()}-${when.getDate()}`;
}

export function dayLabel(when, now = new Date()) {
  const yesterday = new Date(now);
  yesterday.setDate(now.getDate() - 1);
  if (dayKey(when) === dayKey(now)) return "Today";
  if (dayKey(when) === dayKey(yesterday)) return "Yesterday";
  const options = { weekday: "long", day: "numeric", month: "long" };
  if (when.getFullYear() !== now.getFullYear()) options.year = "numeric";
  return when.toLocaleDateString([], options);
}

function sameAuthor(a, b) {
  return a.author === b.author && (a.sender_id ?? null) === (b.sender_id ?? null);
}

// Redraw separators and groups over the whole list: one pass, a few hundred items at most.
export function regroup(list) {
  for (const old of list.querySelectorAll(":scope > li.day")) old.remove();
  const now = new Date();
  let previous = null; // {message, when} of the message before, while a group can go on
  let lastDay = null;
  for (const node of Array.from(list.children)) {
    if (!node.classList.contains("message")) {
      previous = null; // the "New messages" divider starts a new group
      continue;
    }
    const message = node.message;
    const when = message.created_at ? new Date(message.created_at) : null;
    if (when && dayKey(when) !== lastDay) {
      lastDay = dayKey(when);
      previous = null;
      const day = document.createElement("li");
      day.className = "day";
      day.setAttribute("role", "separator");
      day.textContent = dayLabel(when, now);
      day.title = when.toLocaleDateString([], { dateStyle: "full" });
      node.before(day);
    }
    const grouped =
      Boolean(when && previous?.when) &&
      !message.deleted_at &&
      !previous.message.deleted_at &&
      sameAuthor(message, previous.message) &&
      when - previous.when >= 0 &&
      when - previous.when < GROUP_MS;
    node.classList.toggle("grouped", grouped);
    const text = node.querySelector(":scope > .text");
    if (text) text.title = grouped ? when.toLocaleString() : ""; // its hidden time, on hover
    previous = { message, when };
  }
}
