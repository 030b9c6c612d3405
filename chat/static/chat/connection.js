// The page's end of the shared /events stream: it picks how this tab gets it.
//
// Receives: events from the SharedWorker (shared-worker.js), or from the leader tab over a
//           BroadcastChannel (leader.js), or, with neither, from a stream of its own.
// Hands on: onEvent(name, data) once per change (a relayed copy or a resumed replay of one
//           already delivered is dropped here), onState(state) for the connection line.
// If it fails: a tab whose leader closes keeps going: another tab is elected within a moment
//           and resumes from the last token it saw (leader.js).
import { EventsHolder } from "./stream-holder.js";
import { joinLeader } from "./leader.js";

const SEEN_MAX = 2000;

// The same change can reach a tab twice (a new leader resumes from its last token, and
// tokens are opaque so we cannot compare them): a message's content is its identity (every
// version differs: edited_at, deleted_at). The user's own room.* events are not filtered:
// joining a room twice is two events with equal content, and a repeated one only makes
// the sidebar ask /me/rooms again.
class Seen {
  constructor() {
    this.keys = new Set();
  }
  first(name, data) {
    const key = `${name} ${JSON.stringify(data)}`;
    if (this.keys.has(key)) return false;
    this.keys.add(key);
    if (this.keys.size > SEEN_MAX) this.keys.delete(this.keys.values().next().value);
    return true;
  }
}

export function connectShared(url, workerUrl, { onEvent, onState }) {
  const seen = new Seen();
  let token = null;
  const receive = (message) => {
    if (message.type === "state") onState(message.state);
    if (message.type !== "event") return;
    if (message.id) token = message.id;
    if (!message.name.startsWith("message.") || seen.first(message.name, message.data)) {
      onEvent(message.name, message.data);
    }
  };

  // The browser's own word on the network: offline is shown at once (a stream can take a
  // while to notice); back online, the holder opens a fresh stream and its open event, not
  // this, says "connected" again.
  let reconnect = () => {};
  window.addEventListener("offline", () => onState("offline"));
  window.addEventListener("online", () => {
    onState("reconnecting");
    reconnect();
  });

  if (window.SharedWorker) {
    const worker = new SharedWorker(workerUrl, { type: "module", name: "pgchat-events" });
    reconnect = () => worker.port.postMessage({ type: "reconnect" });
    worker.port.addEventListener("message", ({ data }) => receive(data));
    worker.port.start();
    worker.port.postMessage({ type: "hello", url, token });
    window.addEventListener("pagehide", () => worker.port.postMessage({ type: "bye" }));
    window.addEventListener("pageshow", (event) => {
      if (event.persisted) worker.port.postMessage({ type: "hello", url, token }); // back from bfcache
    });
    return { kind: "shared-worker" };
  }
  if (window.BroadcastChannel && navigator.locks) {
    reconnect = joinLeader(url, receive, () => token);
    return { kind: "leader" };
  }
  const holder = new EventsHolder(url, null, receive); // no way to share: this tab holds its own
  reconnect = () => holder.reconnect();
  return { kind: "own" };
}
