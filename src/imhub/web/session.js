// The client's session without the socket (in the manner of the Python client's core): every
// rule of staying connected and holding each message once, in order. A driver
// (connection.js) opens WebSockets and feeds it: `connected(link)`, `receive(msg)`,
// `lost(reason)`, and `tick(now)` for heartbeats and deadlines; the session writes through
// `link.write(obj)` and gives a link up with `link.drop(reason)`. The view listens
// (`on`) and calls `send`, `request`, `logout`.
//
// One connection's life: log in (without backlog), re-enter the open conversation, sync
// every conversation from its cursor page by page, resend the unanswered outbox (same
// msgIdClient), then online, with heartbeats. Any failure on the way drops the connection
// and the driver tries again, except a refused login (401), which closes the session.

import { Inbox } from "./inbox.js";
import { Outbox } from "./outbox.js";
import { CLIENT_TYPE_WEB, MsgType, UNAUTHORIZED, address, convKey, isGroup, newId } from "./protocol.js";
import { RequestError, Requests } from "./requests.js";

export const State = Object.freeze({
  CONNECTING: "connecting",
  ONLINE: "online",
  RECONNECTING: "reconnecting",
  CLOSED: "closed",
});
const OFFLINE = "offline";
const LOGIN = "login";
const ENTER = "enter";
const SYNC = "sync";
const ONLINE = "online";
const RESEND_AFTER = 1000; // ms: a send refused as retryable is tried again this much later
const RETRYABLE = new Set([500, 503, 429]); // nothing was stored: the same msgIdClient again

export class Session {
  constructor(token, storage, options = {}) {
    this.token = token;
    this.o = {
      heartbeatInterval: 25_000,
      heartbeatTimeout: 10_000,
      requestTimeout: 15_000,
      syncPage: 200,
      ...options,
    };
    this.state = State.CONNECTING;
    this.closedReason = "";
    this.userId = 0;
    this.open = null; // the conversation shown: entered on the server, and again after a drop
    this.inbox = new Inbox();
    this.outbox = new Outbox(storage);
    this.requests = new Requests(this.o.requestTimeout);
    this.phase = OFFLINE;
    this.link = null;
    this.conn = 0; // number of the current connection
    this.now = 0;
    this.wentOnline = false;
    this.beatAt = 0;
    this.beatSent = null;
    this.resendAt = null;
    this.gapSync = false;
    this.expired = "";
    this.notices = new Set();
    this.listeners = new Set();
  }

  /** Listen to changes: {type: "state"|"conv"|"synced"|"notice"|"error", …}. */
  on(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  get online() {
    return this.phase === ONLINE;
  }

  // -- the driver's side ----------------------------------------------------------------

  connected(link, now) {
    this.now = now;
    this.link = link;
    this.conn++;
    this.phase = LOGIN;
    this.wentOnline = false;
    this.expired = "";
    const login = { msgType: MsgType.LOGIN, token: this.token, fromClientType: CLIENT_TYPE_WEB };
    this.#step({ ...login, backlog: false }, "login", (answer) => this.#loggedIn(answer));
  }

  receive(msg, now) {
    this.now = now;
    if (this.phase === OFFLINE || typeof msg !== "object" || msg === null) return;
    const t = msg.msgType;
    const rid = msg.msgIdClient;
    if (t === MsgType.HEARTBEAT) {
      this.beatSent = null;
    } else if (t === MsgType.CHAT_ANSWER) {
      this.#answered(msg);
    } else if (rid && this.requests.has(rid)) {
      this.requests.settle(rid, msg);
    } else if (t === MsgType.ERROR) {
      if (rid && this.outbox.has(rid)) this.#refused(rid, msg);
      else if (msg.code === UNAUTHORIZED) {
        // About no request: the session is over (the token expired, the user was deleted).
        this.expired = msg.reason || "session ended";
        this.#drop(this.expired);
      } else this.#emit("error", { text: msg.reason || `error ${msg.code}` });
    } else if (t === MsgType.READ) {
      const conv = this.inbox.read(msg);
      if (conv) this.#emit("conv", { key: conv.key });
    } else if (t === MsgType.NOTICE && msg.seq == null) {
      if (msg.noticeId != null && !this.notices.has(msg.noticeId)) {
        this.notices.add(msg.noticeId); // each notice once, even if it came twice
        if (this.notices.size > 1000) this.notices.delete(this.notices.values().next().value);
        this.#emit("notice", { notice: msg });
      }
    } else {
      this.#deliver(msg, false);
    }
  }

  /** The connection is gone (whoever closed it). */
  lost(reason, now) {
    this.now = now;
    if (this.phase === OFFLINE) return;
    this.phase = OFFLINE;
    this.link = null;
    this.beatSent = null;
    this.resendAt = null;
    this.gapSync = false;
    this.requests.failAll(reason);
    if (this.state === State.CLOSED) return;
    if (this.expired) {
      const why = this.expired === "token expired" ? "your session expired" : this.expired;
      this.close(`${why}: sign in with a new token`);
      return;
    }
    if (this.wentOnline) this.#setState(State.RECONNECTING, reason);
  }

  tick(now) {
    this.now = now;
    this.requests.expire(now);
    if (this.phase !== ONLINE) return;
    if (this.beatSent !== null && now - this.beatSent >= this.o.heartbeatTimeout) {
      this.#drop(`no heartbeat answer within ${this.o.heartbeatTimeout / 1000} s`);
      return;
    }
    if (now >= this.beatAt) {
      this.link.write({ msgType: MsgType.HEARTBEAT });
      this.beatAt = now + this.o.heartbeatInterval;
      this.beatSent ??= now;
    }
    if (this.resendAt !== null && now >= this.resendAt) {
      this.resendAt = null;
      this.#flush();
    }
  }

  // -- the application's side -------------------------------------------------------------

  /** Send `body` to conversation `key`: saved in the outbox at once, written now if
   * online, otherwise after the next sync. Returns its msgIdClient. */
  send(key, body) {
    if (this.state === State.CLOSED) throw new RequestError(0, this.closedReason);
    const conv = this.inbox.get(key);
    if (!isGroup(key) && !conv.peerUserId) throw new RequestError(0, "no recipient known yet");
    const to = isGroup(key) ? { teamId: conv.teamId } : { toUserId: conv.peerUserId };
    const payload = { msgType: MsgType.CHAT, ...to, msgIdClient: newId(), bodyType: 0, body };
    const entry = this.outbox.add(payload, key);
    if (this.phase === ONLINE) this.#write(entry);
    this.#emit("conv", { key });
    return payload.msgIdClient;
  }

  /** A request, answered (a promise); refused at once when not online. */
  request(msg) {
    if (this.phase !== ONLINE) return Promise.reject(new RequestError(0, "not connected"));
    return this.#request(msg, `msgType ${msg.msgType}`);
  }

  /** An item this client made itself (the answer to its recall), in its place. */
  own(key, item) {
    this.inbox.own(key, item);
    this.#emit("conv", { key });
    this.#fillGaps();
  }

  /** Sync in the background when something changed that this client did not see (its own
   * group change: the event is the server's). */
  catchUp() {
    if (this.phase === ONLINE && !this.gapSync) this.#sync();
  }

  /** Stored messages read from history: one of this client's unanswered sends among them is
   * settled (stored; its answer went to an earlier connection). */
  seen(messages) {
    for (const m of messages) this.#settleMine(m);
  }

  /** Tell listeners that `key` changed (the view's own changes, e.g. a history page). */
  changed(key) {
    this.#emit("conv", { key });
  }

  logout() {
    if (this.phase !== ONLINE) {
      this.close("signed out");
      return Promise.resolve();
    }
    const done = () => this.close("signed out");
    return this.#request({ msgType: MsgType.LOGOUT }, "logout").then(done, done);
  }

  /** No more connections. Unanswered sends stay saved for the next sign-in. */
  close(reason) {
    if (this.state === State.CLOSED) return;
    this.closedReason = reason;
    this.#setState(State.CLOSED, reason);
    this.#drop(reason);
  }

  // -- one connection's phases ------------------------------------------------------------

  #loggedIn(answer) {
    this.userId = answer.userId;
    this.inbox.me = answer.userId;
    this.outbox.load(answer.userId);
    this.phase = ENTER;
    const key = this.open;
    if (key === null) {
      this.#sync();
      return;
    }
    const enter = { msgType: MsgType.CHAT_ENTER, ...address(key) };
    this.#step(enter, "enter", (entered) => this.#entered(key, entered), (error) => {
      if (error.code) {
        this.open = null; // not (or no longer) ours: show it no more
        this.#emit("error", { text: error.message });
        this.#sync();
        return true;
      }
      return false;
    });
  }

  #entered(key, answer) {
    const conv = this.inbox.get(key);
    conv.startAfter(answer.seq ?? 0);
    conv.read(answer.seq ?? 0, 0);
    this.#emit("conv", { key });
    this.#sync();
  }

  #sync() {
    if (this.phase === ENTER) this.phase = SYNC;
    this.gapSync = this.phase === ONLINE;
    const request = this.inbox.syncRequest(this.o.syncPage);
    this.#step(request, "sync", (page) => this.#page(page));
  }

  #page(page) {
    for (const m of page.messages ?? []) this.#deliver(m, true);
    for (const c of page.refused ?? []) this.inbox.forget(convKey(c));
    if (page.more) {
      this.#sync();
      return;
    }
    this.inbox.know(page.convs ?? []);
    if (this.phase === SYNC) this.#goOnline();
    else this.gapSync = false;
    this.#emit("synced");
  }

  #goOnline() {
    this.phase = ONLINE;
    this.wentOnline = true;
    this.#flush();
    this.beatAt = this.now + this.o.heartbeatInterval;
    this.beatSent = null;
    this.#setState(State.ONLINE);
  }

  // -- sends -------------------------------------------------------------------------------

  #write(entry) {
    entry.conn = this.conn;
    this.link.write(entry.payload);
  }

  #flush() {
    for (const entry of this.outbox.unsent(this.conn)) this.#write(entry);
  }

  #answered(msg) {
    const entry = this.outbox.take(msg.msgIdClient, true);
    if (!entry) return; // the answer to a resend of something already answered
    const p = entry.payload;
    const item = {
      seq: msg.seq,
      kind: "msg",
      fromUserId: this.userId,
      toUserId: p.toUserId ?? 0,
      body: p.body,
      bodyType: p.bodyType,
      sendTime: msg.sendTime ?? Date.now(),
      recalled: false,
      msgIdClient: p.msgIdClient,
      msgIdServer: msg.msgIdServer ?? 0,
    };
    const key = convKey(msg) ?? entry.conv;
    this.inbox.own(key, item);
    this.#emit("conv", { key });
    if (key !== entry.conv) this.#emit("conv", { key: entry.conv });
    this.#fillGaps();
  }

  #refused(mid, msg) {
    if (RETRYABLE.has(msg.code)) {
      this.outbox.entries.get(mid).conn = 0;
      this.resendAt = this.now + RESEND_AFTER;
      return;
    }
    const entry = this.outbox.take(mid, false);
    this.#emit("error", { text: `Message not sent: ${msg.reason || msg.code}` });
    this.#emit("conv", { key: entry.conv });
  }

  // -- requests and what arrives ----------------------------------------------------------

  #request(msg, what) {
    const [rid, promise] = this.requests.add(this.now, what);
    this.link.write({ ...msg, msgIdClient: rid });
    return promise;
  }

  /** A request of the connection's own (login, enter, sync): its answer goes to `next`
   * while the connection lasts; a failure drops the connection unless `recover` takes it,
   * except a refused login, which closes the session. */
  #step(msg, what, next, recover = () => false) {
    const conn = this.conn;
    const current = () => conn === this.conn && this.phase !== OFFLINE;
    this.#request(msg, what).then(
      (answer) => current() && next(answer),
      (error) => {
        if (!current() || recover(error)) return;
        if (what === "login" && error.code === UNAUTHORIZED) {
          this.close(`sign-in refused: ${error.message}`);
        } else if (what === "sync" && this.phase === ONLINE) {
          this.gapSync = false; // a background sync: the next gap tries again
        } else {
          this.#drop(`${what} failed: ${error.message}`);
        }
      },
    );
  }

  #settleMine(msg) {
    const mid = msg.msgIdClient;
    if (mid && msg.fromUserId === this.userId && this.outbox.has(mid)) {
      this.outbox.take(mid, true); // seen stored: its answer went to an earlier connection
    }
  }

  #deliver(msg, fromSync) {
    this.#settleMine(msg);
    const conv = this.inbox.deliver(msg, fromSync);
    if (conv) this.#emit("conv", { key: conv.key });
    if (!fromSync) this.#fillGaps();
  }

  /** Sync, in the background, a conversation with something missing (or not started). */
  #fillGaps() {
    if (this.phase === ONLINE && !this.gapSync && this.inbox.gaps()) this.#sync();
  }

  #drop(reason) {
    if (this.phase === OFFLINE) return;
    const link = this.link;
    this.lost(reason, this.now);
    link?.drop(reason);
  }

  #setState(state, reason = "") {
    if (state === this.state) return;
    this.state = state;
    this.#emit("state", { state, reason });
  }

  #emit(type, detail = {}) {
    for (const listener of this.listeners) listener({ type, ...detail });
  }
}
