// The SharedWorker every tab of a browser profile shares: it holds the ONE /events stream
// and relays each event to every tab (DESIGN.md: ten open tabs hold one stream).
//
// Receives: tabs connecting (a MessagePort each), their {type: "hello", url, token},
//           {type: "reconnect"} (the network is back) and {type: "bye"}; the stream's
//           events (stream-holder.js).
// Hands on: every event and state change to every tab's port; a new tab first gets the
//           current state.
// If it fails: the worker lives as long as any tab of the profile is open; when the last
//           one closes, the stream closes with it. A tab that finds no SharedWorker uses
//           leader.js instead.
import { EventsHolder } from "./stream-holder.js";

const ports = new Set();
let holder = null;

function broadcast(message) {
  for (const port of ports) port.postMessage(message);
}

self.addEventListener("connect", (event) => {
  const port = event.ports[0];
  port.addEventListener("message", ({ data }) => {
    if (data.type === "hello") {
      ports.add(port);
      if (!holder) holder = new EventsHolder(data.url, data.token, broadcast);
      else port.postMessage({ type: "state", state: holder.state });
    } else if (data.type === "reconnect") {
      holder?.reconnect(); // a tab saw the network come back
    } else if (data.type === "bye") {
      ports.delete(port);
      if (!ports.size && holder) {
        holder.close(); // the last tab left; a new one starts a new stream from its token
        holder = null;
      }
    }
  });
  port.start();
});
