// One conversation as this client holds it (no I/O): a contiguous run of items by seq, from
// `low` up to `cursor`, and items that arrived ahead of a gap, waiting.
//
// The cursor is the last seq held with nothing missing below it (down to `low`): an item at
// or below it is a duplicate and is dropped; the next one is taken with any waiting right
// behind it; one further ahead waits while the session syncs the gap. A conversation seen for
// the first time has no cursor: it is started where the server's sync starts it (the user's
// read position), never after a live item already waiting (as the Python client's ordering).
// History extends the run downwards only (`low`), sync and live traffic upwards only.

import { MsgType, address, isGroupEvent } from "./protocol.js";

export class Conversation {
  constructor(key) {
    this.key = key;
    Object.assign(this, address(key)); // chatId or teamId
    this.peerUserId = null; // one-to-one: the other user
    this.teamName = "";
    this.left = false; // a group this user is no longer in
    this.cursor = null; // null: not started
    this.low = null; // lowest seq held (cursor + 1 when none)
    this.noOlder = false; // history said nothing is older than low
    this.items = new Map(); // seq -> item, for low..cursor
    this.waiting = new Map(); // seq -> item, above cursor + 1
    this.readSeq = 0; // this user's read position
    this.peerReadSeq = 0; // one-to-one: the other user's
    this.lastSeq = 0; // newest seq the server told of
    this.version = 0; // bumped on every change the view shows
  }

  get started() {
    return this.cursor !== null;
  }

  get hasOlder() {
    return this.started && this.low > 1 && !this.noOlder;
  }

  /** Take `item` at its seq; returns the items released in order (possibly none). */
  accept(item) {
    const seq = item.seq;
    if ((this.started && seq <= this.cursor) || this.waiting.has(seq)) return [];
    this.waiting.set(seq, item);
    return this.#drain();
  }

  /** Start a conversation not started yet so that it holds what follows `seq` (or from the
   * first item waiting, if that is lower). Returns the items released. */
  startAfter(seq) {
    if (this.started) return [];
    const first = this.waiting.size ? Math.min(...this.waiting.keys()) : Infinity;
    this.cursor = Math.min(seq, first - 1);
    this.low = this.cursor + 1;
    this.noOlder = this.cursor === 0;
    this.version++;
    return this.#drain();
  }

  /** Nothing at or below `seq` is new (a group membership that began after it: a member
   * removed and added again is not sent what was said while out): a cursor behind it moves
   * there, releasing what waits. */
  skipTo(seq) {
    if (!this.started || this.cursor >= seq) return [];
    this.cursor = seq;
    return this.#drain();
  }

  /** Older items from a history page (oldest first, every seq below `low`). */
  older(messages, more) {
    for (const m of [...messages].reverse()) {
      if (m.seq < this.low) {
        this.items.set(m.seq, itemOf(m));
        this.low = m.seq;
      }
    }
    if (!more || messages.length === 0) this.noOlder = true;
    this.version++;
  }

  /** A gap: items wait above the cursor (or the conversation is not started). */
  get gap() {
    return this.waiting.size > 0;
  }

  /** The items held, oldest first. */
  *held() {
    if (!this.started) return;
    for (let s = this.low; s <= this.cursor; s++) {
      const item = this.items.get(s);
      if (item) yield item;
    }
  }

  /** The newest item that shows as a line (a message or a group event), or null. */
  last() {
    if (!this.started) return null;
    for (let s = this.cursor; s >= this.low; s--) {
      const item = this.items.get(s);
      if (item && item.kind !== "recall") return item;
    }
    return null;
  }

  /** Messages from others, not recalled, after the read position. */
  unread(me) {
    let n = 0;
    if (!this.started) return 0;
    for (let s = this.cursor; s > this.readSeq && s >= this.low; s--) {
      const it = this.items.get(s);
      if (it && it.kind === "msg" && !it.recalled && it.fromUserId !== me) n++;
    }
    return n;
  }

  /** Move the read positions forward (never back). */
  read(readSeq, peerReadSeq) {
    const before = [this.readSeq, this.peerReadSeq];
    if (readSeq > this.readSeq) this.readSeq = readSeq;
    if (peerReadSeq > this.peerReadSeq) this.peerReadSeq = peerReadSeq;
    if (before[0] !== this.readSeq || before[1] !== this.peerReadSeq) this.version++;
  }

  #drain() {
    if (!this.started) return [];
    const released = [];
    while (this.waiting.has(this.cursor + 1)) {
      this.cursor++;
      const item = this.waiting.get(this.cursor);
      this.waiting.delete(this.cursor);
      this.items.set(this.cursor, item);
      this.#apply(item);
      released.push(item);
    }
    for (const s of this.waiting.keys()) if (s <= this.cursor) this.waiting.delete(s);
    if (this.cursor > this.lastSeq) this.lastSeq = this.cursor;
    if (released.length) this.version++;
    return released;
  }

  #apply(item) {
    if (item.kind === "recall") {
      const target = this.items.get(item.refSeq);
      if (target) {
        target.recalled = true;
        target.body = "";
      }
    } else if (item.kind === "event" && item.teamName) {
      this.teamName = item.teamName;
    }
  }
}

/** What a conversation holds of a stored message, recall or group event from the server. */
export function itemOf(m) {
  const base = { seq: m.seq, fromUserId: m.fromUserId ?? 0, sendTime: m.sendTime ?? 0 };
  if (m.msgType === MsgType.RECALL) return { ...base, kind: "recall", refSeq: m.refSeq ?? 0 };
  if (isGroupEvent(m.msgType)) {
    return {
      ...base,
      kind: "event",
      op: m.msgType,
      body: m.body ?? "",
      memberIds: m.memberIds ?? [],
      teamName: m.teamName ?? "",
    };
  }
  return {
    ...base,
    kind: "msg",
    toUserId: m.toUserId ?? 0,
    body: m.recalled ? "" : (m.body ?? ""),
    bodyType: m.bodyType ?? 0,
    recalled: Boolean(m.recalled),
    msgIdClient: m.msgIdClient ?? "",
    msgIdServer: m.msgIdServer ?? 0,
  };
}
