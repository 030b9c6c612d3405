// The per-room stream, for readers without an account (and a server without /events).
//
// Receives: GET /rooms/<slug>/events, an SSE stream of message.* and reaction.* with
//           `id: <cursor>`.
// Hands on: onEvent(name, data) for each change after the page's cursor, once, in order,
//           and each typing / presence signal as it comes; onState(state) for the
//           connection line.
// If it fails: EventSource reconnects by itself and sends Last-Event-ID, so the server
//           replays what we missed. When it gives up (a 4xx, say), we open a new stream from
//           our own cursor with ?last_event_id=, after a backoff. Nothing is lost either way.
//
// The page was rendered with history up to `cursor`; the first stream starts exactly there.
import { api, roomUrl } from "./api.js";

// The changes in the room's log, each with its cursor as `id:`.
export const MESSAGE_EVENTS = [
  "message.created",
  "message.updated",
  "message.deleted",
  "reaction.added",
  "reaction.removed",
];
// Signals with no cursor (never in the log, never replayed): handed on as they come.
export const EPHEMERAL_EVENTS = ["typing", "presence.joined", "presence.left"];
const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 30000;

export function openRoomStream(slug, cursor, { onEvent, onState }) {
  let source = null;
  let retryMs = RETRY_MIN_MS;
  let retryTimer = null;
  let closed = false;
  const offline = () => onState(navigator.onLine ? "reconnecting" : "offline");

  function handle(event) {
    if (closed) return;
    const seq = Number(event.lastEventId);
    if (!(seq > cursor)) return; // already applied
    cursor = seq;
    onEvent(event.type, JSON.parse(event.data));
  }

  function connect() {
    clearTimeout(retryTimer);
    if (closed) return;
    const url = new URL(roomUrl(slug, "events"), window.location.href);
    url.searchParams.set("last_event_id", String(cursor));
    source = new EventSource(url);
    source.addEventListener("open", () => {
      retryMs = RETRY_MIN_MS;
      onState("connected");
    });
    for (const name of MESSAGE_EVENTS) source.addEventListener(name, handle);
    for (const name of EPHEMERAL_EVENTS) {
      source.addEventListener(name, (event) => {
        if (!closed) onEvent(event.type, JSON.parse(event.data));
      });
    }
    source.addEventListener("error", () => {
      offline();
      if (source.readyState === EventSource.CONNECTING) return;
      source.close(); // the browser gave up (e.g. an HTTP error): find out why, then retry
      retryTimer = setTimeout(recover, retryMs);
      retryMs = Math.min(RETRY_MAX_MS, retryMs * 2);
    });
  }

  async function recover() {
    const probe = await api("GET", `${roomUrl(slug, "messages")}?after=${cursor}&limit=1`);
    if (closed) return;
    if (probe.status === 400) {
      window.location.reload(); // our cursor is no longer valid here (the room was reset)
    } else if (probe.status === 403 || probe.status === 404) {
      onState("offline", `offline: ${probe.data.error}`);
    } else {
      connect();
    }
  }

  // Back online: a stream that looks open may be dead, and a backoff would wait for
  // nothing; open a fresh one from our cursor now ("connected" comes with its open event).
  const online = () => {
    source?.close();
    onState("reconnecting");
    retryMs = RETRY_MIN_MS;
    connect();
  };
  const gone = () => onState("offline");
  window.addEventListener("online", online);
  window.addEventListener("offline", gone);
  connect();
  return {
    cursor: () => cursor,
    close() {
      closed = true;
      clearTimeout(retryTimer);
      source?.close();
      window.removeEventListener("online", online);
      window.removeEventListener("offline", gone);
    },
  };
}
