// Read state: when the reader has seen the newest message of the room on screen, tell the
// server (POST /rooms/<slug>/read {"cursor"}); it stores it and every other open stream of
// the user gets room.read, which clears the badge there (sidebar.js asks /me/rooms again).
//
// Receives: the room on screen and its latest cursor (from /me/rooms), and the moments the
//           reader may have caught up: the list reached its bottom, the tab became visible
//           or focused, a refresh of the sidebar.
// Hands on: at most one POST per new cursor.
// If it fails: the badge stays until the next chance (the next message, focus, scroll).
import { api, roomUrl } from "./api.js";

export class ReadState {
  constructor({ atBottom }) {
    this.atBottom = atBottom;
    this.room = null; // the /me/rooms entry of the room on screen, if joined
    this.posted = new Map(); // slug -> the last cursor posted
    const poke = () => this.check();
    document.addEventListener("visibilitychange", poke);
    window.addEventListener("focus", poke);
  }

  // Visible, focused, scrolled to the newest: the reader sees it.
  reading() {
    return document.visibilityState === "visible" && document.hasFocus() && this.atBottom();
  }

  show(room) {
    this.room = room;
    this.check();
  }

  check() {
    const room = this.room;
    if (!room || !this.reading()) return;
    const latest = room.latest || 0;
    if (latest <= (room.last_read || 0) || latest <= (this.posted.get(room.slug) || 0)) return;
    this.posted.set(room.slug, latest);
    api("POST", roomUrl(room.slug, "read"), { cursor: latest }).then((result) => {
      if (result.ok) room.last_read = result.data.last_read;
      else this.posted.delete(room.slug); // try again next time
    });
  }
}
