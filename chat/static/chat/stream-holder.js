// The one EventSource on GET /events, for whoever holds it: the SharedWorker
// (shared-worker.js) or, where there is none, the leader tab (leader.js). No DOM here.
//
// Receives: the SSE stream of every room the user joined (DESIGN.md, "One connection per
//           browser"): message.*, room.joined / room.left / room.read and later kinds, each
//           with `id: <opaque resume token>`.
// Hands on: post({type: "event", name, data, id}) per event, post({type: "state", state})
//           when the connection changes; `token` is the last id seen.
// If it fails: EventSource reconnects by itself with Last-Event-ID (the server replays what
//           we missed, in every room). When the browser gives up on it (an HTTP error), we
//           open it again after a backoff with ?last_event_id=<token>; after two refusals in
//           a row the token is dropped (it may be the thing refused) and the pages fill the
//           gap from the history API, as they do on every "connected".

export const STREAM_EVENTS = [
  "message.created",
  "message.updated",
  "message.deleted",
  "room.joined",
  "room.left",
  "room.read",
  "typing",
  "presence.joined",
  "presence.left",
  "reaction.added",
  "reaction.removed",
];
const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 30000;

export class EventsHolder {
  constructor(url, token, post) {
    this.url = url;
    this.token = token || null; // where a new stream resumes from
    this.post = post;
    this.state = "connecting";
    this.source = null;
    this.retryMs = RETRY_MIN_MS;
    this.refusals = 0;
    this.timer = null;
    this.open();
  }

  setState(state) {
    this.state = state;
    this.post({ type: "state", state });
  }

  open() {
    const url = new URL(this.url, self.location.href);
    if (this.token) url.searchParams.set("last_event_id", this.token);
    const source = new EventSource(url, { withCredentials: true });
    this.source = source;
    source.addEventListener("open", () => {
      this.retryMs = RETRY_MIN_MS;
      this.refusals = 0;
      this.setState("connected");
    });
    const relay = (event) => {
      if (event.lastEventId) this.token = event.lastEventId;
      let data = null;
      try {
        data = JSON.parse(event.data);
      } catch (err) {
        return; // not ours to show
      }
      this.post({ type: "event", name: event.type, data, id: event.lastEventId || null });
    };
    for (const name of STREAM_EVENTS) source.addEventListener(name, relay);
    source.addEventListener("error", () => {
      if (source !== this.source) return; // one we closed for a fresh one
      this.setState(self.navigator.onLine === false ? "offline" : "reconnecting");
      if (source.readyState === EventSource.CONNECTING) return; // it retries by itself
      source.close();
      this.refusals += 1;
      if (this.refusals >= 2) this.token = null;
      this.timer = setTimeout(() => this.open(), this.retryMs);
      this.retryMs = Math.min(RETRY_MAX_MS, this.retryMs * 2);
    });
  }

  // The network came back (the browser says "online"): a stream that looks open may be
  // dead, and one waiting out a backoff would wait for nothing. Open a fresh one from the
  // token now; "connected" is said by its open event, not assumed.
  reconnect() {
    clearTimeout(this.timer);
    this.source?.close();
    this.retryMs = RETRY_MIN_MS;
    this.setState("reconnecting");
    this.open();
  }

  close() {
    clearTimeout(this.timer);
    this.source?.close();
  }
}
