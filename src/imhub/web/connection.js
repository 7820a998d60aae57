// The session's driver: the WebSocket, the clock and the reconnect loop. It opens a socket,
// hands the session what arrives, and after a drop waits (backoff with jitter, reset once a
// connection got online) and connects again, until the session is closed. The browser's
// "online" event, or the page coming back into view, cuts a wait short.

import { backoff } from "./backoff.js";
import { State } from "./session.js";

const TICK = 500; // ms between the session's clock ticks (heartbeats, deadlines)
// A socket not open within this is given up and tried again: behind a black hole the browser
// would wait minutes for the handshake (found by an outside tester: 240 s).
const OPEN_WITHIN = 10_000;

export class Connection {
  constructor(session, url, { backoffBase = 0.5, backoffCap = 15, openWithin = OPEN_WITHIN } = {}) {
    this.session = session;
    this.url = url;
    this.base = backoffBase;
    this.cap = backoffCap;
    this.openWithin = openWithin; // ms
    this.failures = 0; // attempts in a row that did not get online
    this.ws = null;
    this.timer = null; // the pending reconnect
    this.nextAttempt = 0; // when the pending reconnect is due (ms since the epoch)
    this.clock = setInterval(() => session.tick(Date.now()), TICK);
    session.on((e) => {
      if (e.type === "state" && e.state === State.ONLINE) this.failures = 0;
      if (e.type === "state" && e.state === State.CLOSED) this.#stop();
    });
    this.#wake = () => this.#retryNow();
    addEventListener("online", this.#wake);
    document.addEventListener("visibilitychange", this.#wake);
  }

  #wake;

  start() {
    this.#connect();
  }

  #connect() {
    this.timer = null;
    if (this.session.state === State.CLOSED) return;
    const ws = new WebSocket(this.url);
    this.ws = ws;
    const opening = setTimeout(() => this.#abandon(ws, "no answer to the handshake"), this.openWithin);
    const link = {
      write: (obj) => ws.readyState === WebSocket.OPEN && ws.send(JSON.stringify(obj)),
      drop: (reason) => this.#abandon(ws, reason),
    };
    ws.onopen = () => {
      clearTimeout(opening);
      this.session.connected(link, Date.now());
    };
    ws.onmessage = (event) => {
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch {
        console.warn("imhub: undecodable message from the server", event.data);
        return;
      }
      this.session.receive(msg, Date.now());
    };
    ws.onclose = (event) => {
      clearTimeout(opening);
      this.session.lost(`connection closed (${event.code})`, Date.now());
      this.#abandon(ws, "closed");
    };
  }

  /** Give a socket up (the session dropped it, or it closed) and plan the next attempt. */
  #abandon(ws, reason) {
    if (ws !== this.ws) return;
    ws.onopen = ws.onmessage = ws.onclose = null;
    if (ws.readyState <= WebSocket.OPEN) ws.close(1000, reason.slice(0, 100));
    this.ws = null;
    if (this.session.state === State.CLOSED) return;
    this.failures++;
    const delay = backoff(this.failures, this.base, this.cap);
    this.nextAttempt = Date.now() + delay;
    this.timer = setTimeout(() => this.#connect(), delay);
  }

  #retryNow() {
    if (this.timer === null || document.visibilityState === "hidden") return;
    clearTimeout(this.timer);
    this.#connect();
  }

  #stop() {
    clearInterval(this.clock);
    clearTimeout(this.timer);
    this.timer = null;
    removeEventListener("online", this.#wake);
    document.removeEventListener("visibilitychange", this.#wake);
    if (this.ws) this.#abandon(this.ws, "closed");
  }
}
