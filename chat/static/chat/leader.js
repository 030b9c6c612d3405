// Sharing one /events stream without a SharedWorker: one tab leads and relays.
//
// Receives: the leader lock (Web Locks API: the browser grants it to one tab of the profile
//           at a time, and to the next waiting tab the moment its holder closes or crashes);
//           relayed messages on the BroadcastChannel "pgchat-events".
// Hands on: every message to receive() in this tab; as the leader, also to every other tab.
// If it fails: when the leader tab closes, its lock is released and the next tab (they all
//           wait for it) opens the stream from the last resume token it saw: what the old
//           leader had not relayed yet is replayed by the server, and what every tab has
//           already seen is dropped by connection.js. Hand-over takes one stream open.
import { EventsHolder } from "./stream-holder.js";

const LOCK = "pgchat-events-leader";
const CHANNEL = "pgchat-events";

export function joinLeader(url, receive, lastToken) {
  const channel = new BroadcastChannel(CHANNEL);
  let holder = null;

  channel.addEventListener("message", ({ data }) => {
    if (data.type === "hello") {
      if (holder) channel.postMessage({ type: "state", state: holder.state }); // a new tab asks
      return;
    }
    if (data.type === "reconnect") {
      holder?.reconnect();
      return;
    }
    if (!holder) receive(data);
  });
  channel.postMessage({ type: "hello" });

  // Waits in the lock's queue until it is this tab's turn, then holds the lock for the life
  // of the page (the promise never settles; the browser releases it when the page goes).
  navigator.locks.request(LOCK, () => {
    document.documentElement.dataset.eventsLeader = "yes"; // for people and tests
    holder = new EventsHolder(url, lastToken(), (message) => {
      channel.postMessage(message);
      receive(message);
    });
    return new Promise(() => {});
  });

  // The network is back: the leader opens a fresh stream (another tab may be the leader).
  return () => {
    if (holder) holder.reconnect();
    else channel.postMessage({ type: "reconnect" });
  };
}
