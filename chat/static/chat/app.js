// The room page: wires the modules together and switches rooms without reloading.
//
// Receives: the page's boot data (chat/pages.py: the room, its history up to cursor N, the
//           user), then changes from a stream: the shared /events stream for a logged-in
//           user's joined rooms (connection.js), or the room's own stream for a room the
//           reader has not joined (anonymous readers included; room-stream.js).
// Hands on: each change to the message list (messages.js), the sidebar (sidebar.js), read
//           state (readstate.js) and notifications (notify.js).
// If it fails: every (re)connect of the shared stream fills the room on screen from the
//           history API after the last cursor the page had, so a change the stream did not
//           bring is read from the log; applying one twice is harmless (upsert by id and
//           version). A room that cannot be opened in the page is opened by a normal load.
import { api, roomUrl } from "./api.js";
import { setupComposer } from "./composer.js";
import { connectShared } from "./connection.js";
import { MembersPanel } from "./members.js";
import { MessageList } from "./messages.js";
import { Notifier } from "./notify.js";
import { Presence, Typing } from "./presence.js";
import { ReadState } from "./readstate.js";
import { openRoomStream } from "./room-stream.js";
import { Sidebar, roomName } from "./sidebar.js";
import { isolatedName } from "./dom.js";

const FILL_PAGE = 200; // the history API's largest page (chat/messages_api.py HISTORY_LIMIT_MAX)
const FILL_PAGES_MAX = 20; // 20 x 200 changes; beyond that a reload is the better catch-up

const boot = JSON.parse(document.getElementById("chat-boot").textContent);
const user = boot.user;
const $ = (id) => document.getElementById(id);
const connection = $("connection");
const heading = $("room-title");
const roomAction = $("room-action");

const shared = Boolean(user && boot.urls.user_events); // else every room has its own stream
const current = { slug: boot.room.slug, info: boot.room, cursor: boot.cursor, joined: boot.room.joined };
let sharedState = "connecting";
let preview = null; // the room stream, while the room on screen is not one of the user's
let readState = null;
let sidebar = null;
let composer = null;
let members = null;
let notifier = null;

function setConnection(state, text) {
  connection.dataset.state = state;
  connection.textContent = text || (state === "reconnecting" ? "reconnecting…" : state);
}

const list = new MessageList({
  user,
  list: $("messages"),
  scroller: $("scroller"),
  olderButton: $("load-older"),
  jumpButton: $("jump-latest"),
  onBottom: () => readState?.check(),
  onDirect: user ? (name) => openDirect(name) : null,
});
list.reset(current.slug, { messages: boot.messages, has_more: boot.has_more });
const presence = new Presence($("presence"), user?.name || null);
const typing = new Typing($("typing"));
typing.show(current.slug);

// An event of the room on screen, whichever stream brought it.
function onRoomEvent(name, data) {
  if (name.startsWith("reaction.")) list.react(name, data);
  else if (name.startsWith("presence.")) presence.apply(name, data);
  else if (name === "typing") typing.typed(data);
  else if (name.startsWith("message.")) {
    list.upsert(data);
    if (name === "message.created" && data.author) typing.spoke(data.author);
  }
}

function showPreview() {
  preview?.close();
  preview = openRoomStream(current.slug, current.cursor, {
    onEvent: onRoomEvent,
    onState: (state, text) => {
      setConnection(state, text);
      if (state === "connected") presence.load(current.slug); // never replayed: ask
    },
  });
}

window.pgchat = { cursor: () => (preview ? preview.cursor() : current.cursor), room: () => current.slug };

if (!shared || !current.joined) showPreview(); // the room's own stream

// -- a logged-in user: the workspace ---------------------------------------------------------

// Changes after the page's cursor in the room on screen, from the log: after a room is
// loaded and after every (re)connect, whatever the stream did or did not bring.
async function fill() {
  const slug = current.slug;
  for (let page = 0; page < FILL_PAGES_MAX; page += 1) {
    const result = await api("GET", `${roomUrl(slug, "messages")}?after=${current.cursor}&limit=${FILL_PAGE}`);
    if (!result.ok || slug !== current.slug || preview) return;
    for (const change of result.data.changes) onRoomEvent(change.event, change.message);
    const done = !result.data.has_more;
    current.cursor = Math.max(current.cursor, done ? result.data.cursor : result.data.next || 0);
    if (done) return;
  }
}

function showRoomHead() {
  const name = roomName(current.info);
  heading.replaceChildren(isolatedName(name));
  if (current.info.is_private && !current.info.is_direct) {
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = "private";
    heading.append(" ", badge);
  }
  document.querySelector("section.room").setAttribute("aria-label", name);
  if (roomAction) {
    const canLeave = current.joined && !current.info.is_direct;
    const canJoin = !current.joined && !current.info.is_private;
    roomAction.hidden = !(canLeave || canJoin);
    roomAction.textContent = canLeave ? "Leave room" : "Join room";
    roomAction.dataset.action = canLeave ? "leave" : "join";
  }
}

// The room on screen is joined (the shared stream carries it) or not (its own stream).
function followRoom() {
  current.joined = sidebar.joined(current.slug);
  const joined = shared && current.joined;
  if (joined && preview) {
    preview.close();
    current.cursor = Math.max(current.cursor, preview.cursor());
    preview = null;
    setConnection(sharedState);
    fill();
    presence.load(current.slug);
  } else if (!joined && !preview) {
    showPreview();
  }
  showRoomHead();
}

async function switchTo(slug, { push = true } = {}) {
  if (slug === current.slug) return;
  const result = await api("GET", `${roomUrl(slug, "messages")}?limit=50`);
  if (!result.ok) {
    window.location.assign(roomUrl(slug)); // the server's page says what is wrong
    return;
  }
  const info = sidebar.info(slug) || { slug, title: result.data.room };
  preview?.close();
  preview = null;
  Object.assign(current, { slug, info, cursor: result.data.cursor, joined: sidebar.joined(slug) });
  if (push) history.pushState({ room: slug }, "", roomUrl(slug));
  list.reset(slug, result.data, info.unread || 0);
  typing.show(slug);
  presence.load(slug);
  composer?.switchTo(roomName(info));
  sidebar.setCurrent(slug);
  members.show(info);
  readState.show(sidebar.rooms.get(slug) || null);
  followRoom();
  if (shared && current.joined) {
    setConnection(sharedState);
    fill();
  }
}

async function openDirect(name) {
  const result = await api("POST", `/dm/${encodeURIComponent(name)}`);
  if (!result.ok) return;
  await sidebar.load();
  switchTo(result.data.room);
}

if (user) {
  readState = new ReadState({ atBottom: () => list.nearBottom() });
  let firstRooms = true;
  sidebar = new Sidebar($("sidebar"), {
    publicRooms: boot.public_rooms,
    baseTitle: () => `${roomName(current.info)} · pgchat`,
    isReading: () => readState.reading(),
    onOpen: (slug) => switchTo(slug),
    onRooms: (rooms) => {
      const info = rooms.get(current.slug);
      if (info) current.info = info;
      if (firstRooms && info?.unread) list.markUnread(info.unread);
      firstRooms = false;
      followRoom();
      readState.show(info || null);
    },
  });
  sidebar.setCurrent(current.slug);
  members = new MembersPanel($("members"), { me: user, onDirect: (name) => openDirect(name) });
  members.show(current.info);
  notifier = new Notifier($("notify-slot"), {
    me: user,
    roomOf: (slug) => sidebar.rooms.get(slug) || null,
    onOpen: (slug) => switchTo(slug),
  });
  const form = $("send");
  if (form) {
    composer = setupComposer(form, {
      room: () => current.slug,
      me: user.id,
      onEditLast: () => list.editLast(),
      onSent: (message) => {
        list.upsert(message); // the stream brings it too; the upsert makes that harmless
        list.scrollToBottom();
      },
    });
  }
  roomAction?.addEventListener("click", async () => {
    const slug = current.slug;
    if (roomAction.dataset.action === "leave") await sidebar.leave(slug);
    else await sidebar.join(slug);
  });
  window.addEventListener("popstate", () => {
    const match = window.location.pathname.match(/^\/rooms\/([^/]+)\/$/);
    if (match) switchTo(decodeURIComponent(match[1]), { push: false });
  });
  history.replaceState({ room: current.slug }, "", window.location.href);

  if (shared) {
    connectShared(boot.urls.user_events, boot.urls.worker, {
      onState: (state) => {
        sharedState = state;
        if (!preview) setConnection(state);
        if (state === "connected") {
          sidebar.refresh();
          if (!preview) {
            fill();
            presence.load(current.slug);
          }
        }
      },
      onEvent: (name, data) => {
        if (data.room === current.slug && !preview) onRoomEvent(name, data);
        if (name === "message.created") notifier.onMessage(data);
        if (name.startsWith("message.") || name.startsWith("room.")) sidebar.refresh();
      },
    });
  }
  sidebar.load();
}
