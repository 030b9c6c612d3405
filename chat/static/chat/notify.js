// Desktop notifications: a mention of the reader, or a direct message, arriving while the
// tab is hidden. Permission is asked for only when the user presses "Enable notifications"
// (browsers ignore or punish a prompt on load, and it is rude).
//
// Receives: message.created events (all rooms, from the shared stream); the user's rooms.
// Hands on: a Notification (clicking it focuses the tab and opens the room).
// If it fails: no permission, no Notification API: nothing is raised; the sidebar badges
//           still say it.
import { button, mentionedNames } from "./dom.js";

export class Notifier {
  constructor(slot, { me, roomOf, onOpen }) {
    this.me = me; // {id, name}
    this.roomOf = roomOf; // slug -> /me/rooms entry or null
    this.onOpen = onOpen;
    if (!("Notification" in window) || !slot) return;
    const enable = button("enable-notifications", "Enable notifications", async () => {
      const answer = await Notification.requestPermission();
      enable.hidden = answer === "granted";
      if (answer === "denied") enable.textContent = "Notifications are blocked";
    });
    enable.id = "enable-notifications";
    enable.hidden = Notification.permission === "granted";
    slot.append(enable);
  }

  wanted(message) {
    if (message.sender_id === this.me.id || message.deleted_at) return false;
    const room = this.roomOf(message.room);
    return Boolean(room?.is_direct) || mentionedNames(message.text || "").has(this.me.name);
  }

  onMessage(message) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    if (document.visibilityState === "visible" || !this.wanted(message)) return;
    const room = this.roomOf(message.room);
    const where = room?.is_direct ? "" : ` in ${room?.title || message.room}`;
    // The tag folds the copies raised by several hidden tabs of the profile into one.
    const shown = new Notification(`${message.author}${where}`, {
      body: message.text,
      tag: `pgchat-message-${message.id}`,
    });
    shown.addEventListener("click", () => {
      window.focus();
      this.onOpen(message.room);
      shown.close();
    });
  }
}
