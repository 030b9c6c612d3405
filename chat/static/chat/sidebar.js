// The sidebar: the user's rooms and direct messages with unread and mention badges, public
// rooms to join, and the total in the page title.
//
// Receives: GET /me/rooms (the truth, counted by SQL), asked again whenever the stream says
//           something that changes it (refresh(): a message, a read, a join or leave);
//           the room on screen (setCurrent) and whether it is being read (isReading()).
// Hands on: the DOM of #sidebar, document.title, onOpen(slug) when a room is picked,
//           onRooms(rooms) after every refresh (read state and the room head use it).
// If it fails: a refresh that fails leaves the last list on screen; the next event or
//           reconnect asks again. Nothing here is state of its own: a reload shows the same.
import { api, roomUrl } from "./api.js";
import { element, button } from "./dom.js";

const REFRESH_DELAY_MS = 100; // a burst of events is one request
const CAP = 100; // the server counts up to 99 exactly; 100 means "100 or more"

const shown = (n) => (n >= CAP ? "99+" : String(n));
export const roomName = (room) => room.dm_with || room.title || `#${room.slug}`;

export class Sidebar {
  constructor(root, { publicRooms, baseTitle, isReading, onOpen, onRooms }) {
    this.root = root;
    this.publicRooms = publicRooms; // [{slug, title}] when the page was rendered
    this.baseTitle = baseTitle;
    this.isReading = isReading;
    this.onOpen = onOpen;
    this.onRooms = onRooms;
    this.rooms = new Map(); // slug -> /me/rooms entry
    this.current = null;
    this.timer = null;
    this.asking = null;
    this.again = false;
    this.lists = {
      rooms: root.querySelector("#my-rooms"),
      direct: root.querySelector("#my-dms"),
      browse: root.querySelector("#browse-rooms"),
    };
  }

  joined(slug) {
    return this.rooms.has(slug);
  }

  info(slug) {
    return this.rooms.get(slug) || this.publicRooms.find((room) => room.slug === slug) || null;
  }

  setCurrent(slug) {
    this.current = slug;
    this.draw();
  }

  // Ask again soon: one request for a burst, and one more if something came in meanwhile.
  refresh() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.load(), REFRESH_DELAY_MS);
  }

  async load() {
    if (this.asking) {
      this.again = true;
      return this.asking;
    }
    this.asking = api("GET", "/me/rooms");
    const result = await this.asking;
    this.asking = null;
    if (result.ok) {
      this.rooms = new Map(result.data.rooms.map((room) => [room.slug, room]));
      this.draw();
      this.onRooms(this.rooms);
    }
    if (this.again) {
      this.again = false;
      this.refresh();
    }
    return result;
  }

  // The current room, while the reader is on it, has nothing unread whatever the last
  // answer said: the read is on its way (readstate.js).
  unread(room) {
    return room.slug === this.current && this.isReading() ? { unread: 0, mentions: 0 } : room;
  }

  entry(room) {
    const item = element("li", "room-entry");
    item.dataset.room = room.slug;
    const link = element("a", "room-link", roomName(room));
    link.href = roomUrl(room.slug);
    link.addEventListener("click", (event) => {
      if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return; // a new tab
      event.preventDefault();
      this.onOpen(room.slug);
    });
    item.append(link);
    if (room.slug === this.current) {
      item.classList.add("current");
      link.setAttribute("aria-current", "page");
    }
    const counts = this.unread(room);
    if (counts.mentions) {
      const badge = element("span", "mentions", `@${shown(counts.mentions)}`);
      badge.title = `${counts.mentions} mentioning you`;
      item.append(badge);
    }
    if (counts.unread) {
      const badge = element("span", "unread", shown(counts.unread));
      badge.title = `${counts.unread} unread`;
      item.append(badge);
    }
    return item;
  }

  draw() {
    const mine = Array.from(this.rooms.values());
    this.lists.rooms.replaceChildren(...mine.filter((r) => !r.is_direct).map((r) => this.entry(r)));
    this.lists.direct.replaceChildren(...mine.filter((r) => r.is_direct).map((r) => this.entry(r)));
    this.root.querySelector("#dm-heading").hidden = !mine.some((r) => r.is_direct);
    const others = this.publicRooms.filter((room) => !this.rooms.has(room.slug));
    this.lists.browse.replaceChildren(
      ...others.map((room) => {
        const item = element("li", "browse-entry");
        item.dataset.room = room.slug;
        const link = element("a", "room-link", roomName(room));
        link.href = roomUrl(room.slug);
        link.addEventListener("click", (event) => {
          if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
          event.preventDefault();
          this.onOpen(room.slug);
        });
        const join = button("join", "Join", () => this.join(room.slug));
        join.setAttribute("aria-label", `Join ${roomName(room)}`);
        item.append(link, join);
        return item;
      }),
    );
    this.root.querySelector("#browse").hidden = !others.length;
    const total = mine.reduce((sum, room) => sum + this.unread(room).unread, 0);
    document.title = total ? `(${total}) ${this.baseTitle()}` : this.baseTitle();
  }

  async join(slug) {
    const result = await api("POST", roomUrl(slug, "join"));
    if (result.ok) {
      // Joined: open the room whatever the list's refresh does (a slow or failed
      // /me/rooms must not leave the user on the old room; the stream refreshes it later).
      try {
        await this.load();
      } finally {
        this.onOpen(slug);
      }
    }
    return result;
  }

  async leave(slug) {
    const result = await api("POST", roomUrl(slug, "leave"));
    if (result.ok) await this.load();
    return result;
  }
}
