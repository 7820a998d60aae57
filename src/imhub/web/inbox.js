// Every conversation this client holds, and how what arrives from the server lands in them
// (no I/O): delivered messages, sync pages, the list of conversations a sync ends with, read
// positions. Each item lands once, in its conversation's seq order (conversation.js).

import { Conversation, itemOf } from "./conversation.js";
import { MsgType, address, convKey } from "./protocol.js";

export class Inbox {
  constructor() {
    this.me = 0;
    this.convs = new Map(); // key -> Conversation
  }

  /** The conversation `key`, made (not started) if new. */
  get(key) {
    let conv = this.convs.get(key);
    if (!conv) {
      conv = new Conversation(key);
      this.convs.set(key, conv);
    }
    return conv;
  }

  /** A stored message, recall or group event (live, or from a sync page when `fromSync`,
   * which may start its conversation). Returns the conversation, or null. */
  deliver(msg, fromSync) {
    const key = convKey(msg);
    if (!key || msg.seq == null) return null;
    const conv = this.get(key);
    if (fromSync && !conv.started) conv.startAfter(msg.seq - 1);
    this.#learn(conv, msg);
    this.#effects(conv, conv.accept(itemOf(msg)));
    if (msg.msgType === MsgType.CHAT && !fromSync) conv.read(msg.seq, 0); // shown: read at once
    return conv;
  }

  /** An item this client made itself (a send's or a recall's answer). */
  own(key, item) {
    const conv = this.get(key);
    this.#effects(conv, conv.accept(item));
    return conv;
  }

  /** A read position moved: this user's (another device) or, in a one-to-one chat, the
   * other user's (a read receipt). */
  read(msg) {
    const key = convKey(msg);
    if (!key || this.convs.get(key) === undefined) return null;
    const conv = this.convs.get(key);
    if (msg.fromUserId === this.me) conv.read(msg.seq ?? 0, 0);
    else conv.read(0, msg.seq ?? 0);
    return conv;
  }

  /** The conversation list a finished sync ends with (or a convs answer): positions, names,
   * and the start of every conversation no page started. */
  know(states) {
    for (const s of states) {
      const conv = this.get(convKey(s));
      if (s.peerUserId) conv.peerUserId = s.peerUserId;
      if (s.teamName) conv.teamName = s.teamName;
      conv.left = Boolean(s.left);
      if ((s.lastSeq ?? 0) > conv.lastSeq) conv.lastSeq = s.lastSeq;
      conv.read(s.readSeq ?? 0, s.peerReadSeq ?? 0);
      this.#effects(conv, conv.startAfter(s.lastSeq ?? 0));
      if (s.joinSeq) this.#effects(conv, conv.skipTo(s.joinSeq - 1));
      conv.version++;
    }
  }

  /** Stop following a conversation the server refused (not this user's). */
  forget(key) {
    this.convs.delete(key);
  }

  /** The sync request: every started conversation from its cursor (the server adds those
   * not named, from the user's read position). */
  syncRequest(limit) {
    const convs = [];
    for (const c of this.convs.values()) {
      if (c.started) convs.push({ ...address(c.key), seq: c.cursor });
    }
    return { msgType: MsgType.SYNC, convs, limit };
  }

  /** Whether some conversation has items waiting behind a gap (or is not started). */
  gaps() {
    for (const c of this.convs.values()) if (c.gap) return true;
    return false;
  }

  #learn(conv, msg) {
    if (conv.chatId && !conv.peerUserId && msg.fromUserId) {
      const peer = msg.fromUserId === this.me ? msg.toUserId : msg.fromUserId;
      if (peer && peer !== this.me) conv.peerUserId = peer;
    }
  }

  #effects(conv, released) {
    for (const item of released) {
      if (item.kind !== "event") continue;
      const mine = item.memberIds.includes(this.me);
      if (item.op === MsgType.TEAM_DISMISS) conv.left = true;
      else if (item.op === MsgType.TEAM_REMOVE && mine) conv.left = true;
      else if (item.op === MsgType.TEAM_LEAVE && item.fromUserId === this.me) conv.left = true;
      else if ((item.op === MsgType.TEAM_ADD || item.op === MsgType.TEAM_CREATE) && mine) {
        conv.left = false;
      }
    }
  }
}
