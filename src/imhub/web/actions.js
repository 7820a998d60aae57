// What the person does, as protocol requests on the session: show a conversation (chat_enter
// and chat_quit), page back through its history, start a chat, make and grow a group,
// recall a message. Each result lands in the session's conversations.

import { itemOf } from "./conversation.js";
import { MsgType, address } from "./protocol.js";

const PAGE = 30;
const SCREENFUL = 20; // lines a newly shown conversation should have, if it has them

export class Actions {
  constructor(session) {
    this.session = session;
    this.inbox = session.inbox;
    this.loading = new Set(); // conversations with a history page on the way
  }

  /** Show conversation `key` (or none): quit the one shown before, enter this one. */
  async show(key) {
    const s = this.session;
    const before = s.open;
    if (before === key) return;
    s.open = key;
    if (!s.online) return; // entered when the connection is back
    if (before) s.request({ msgType: MsgType.CHAT_QUIT, ...address(before) }).catch(() => {});
    if (!key) return;
    const answer = await s.request({ msgType: MsgType.CHAT_ENTER, ...address(key) });
    const conv = this.inbox.get(key);
    if (!conv.started) await this.#startFromHistory(key);
    conv.read(answer.seq ?? 0, 0);
    s.changed(key);
    await this.fill(key);
  }

  /** Load history until the conversation has a screenful (or no more). */
  async fill(key) {
    const conv = this.inbox.convs.get(key);
    while (conv?.started && conv.hasOlder && lines(conv) < SCREENFUL) {
      if (!(await this.older(key))) break;
    }
  }

  /** One page of older messages; false when none came (offline, or already loading). */
  async older(key, limit = PAGE) {
    const conv = this.inbox.convs.get(key);
    if (!conv?.hasOlder || this.loading.has(key) || !this.session.online) return false;
    this.loading.add(key);
    try {
      const before = conv.low;
      const page = await this.session.request({
        msgType: MsgType.HISTORY,
        ...address(key),
        beforeSeq: before,
        limit,
      });
      if (conv.low !== before) return false;
      this.session.seen(page.messages ?? []);
      conv.older(page.messages ?? [], page.more);
      // Not loading any more before the view redraws: a view still at the top (a page that
      // does not fill it) asks for the next page from its redraw, and must not be refused.
      this.loading.delete(key);
      this.session.changed(key);
      return true;
    } catch {
      return false;
    } finally {
      this.loading.delete(key);
    }
  }

  /** After a sync: a few messages of each conversation that shows none (for the list). */
  async previews() {
    for (const conv of [...this.inbox.convs.values()]) {
      if (conv.started && !conv.last() && conv.hasOlder) await this.older(conv.key, 10);
    }
  }

  /** The one-to-one chat with `userId` (made if new: team_create with one member). */
  async startChat(userId) {
    const answer = await this.session.request({
      msgType: MsgType.TEAM_CREATE,
      teamName: "chat",
      memberIds: [userId],
    });
    const key = `c${answer.chatId}`;
    const conv = this.inbox.get(key);
    conv.peerUserId = userId;
    if (!conv.started) await this.#startFromHistory(key);
    return key;
  }

  async createGroup(name, memberIds) {
    const answer = await this.session.request({
      msgType: MsgType.TEAM_CREATE,
      teamName: name,
      memberIds,
    });
    if (!answer.teamId) return `c${answer.chatId}`; // one other member: a one-to-one chat
    const key = `t${answer.teamId}`;
    this.inbox.get(key).teamName = answer.teamName;
    this.session.catchUp(); // the "created" event is the server's: sync it
    return key;
  }

  async addMembers(key, memberIds) {
    const answer = await this.session.request({
      msgType: MsgType.TEAM_ADD,
      ...address(key),
      memberIds,
    });
    if (answer.seq) this.session.catchUp();
    return answer;
  }

  async info(key) {
    const answer = await this.session.request({ msgType: MsgType.TEAM_INFO, ...address(key) });
    const conv = this.inbox.get(key);
    conv.members = answer.memberIds ?? [];
    conv.ownerId = answer.ownerId ?? 0;
    if (answer.teamName) conv.teamName = answer.teamName;
    this.session.changed(key);
    return answer;
  }

  async recall(key, seq) {
    const answer = await this.session.request({ msgType: MsgType.RECALL, ...address(key), seq });
    this.session.own(key, {
      seq: answer.seq,
      kind: "recall",
      refSeq: answer.refSeq ?? seq,
      fromUserId: this.session.userId,
      sendTime: answer.sendTime ?? Date.now(),
    });
  }

  /** Start a conversation no sync started (one never written in) from its newest page. */
  async #startFromHistory(key) {
    const page = await this.session.request({ msgType: MsgType.HISTORY, ...address(key), limit: PAGE });
    const conv = this.inbox.get(key);
    if (conv.started) return;
    const messages = page.messages ?? [];
    this.session.seen(messages);
    conv.startAfter(messages.length ? messages[messages.length - 1].seq : 0);
    conv.older(messages.filter((m) => m.seq <= conv.cursor), page.more);
    for (const m of messages) if (m.seq > conv.cursor) this.inbox.own(key, itemOf(m));
    this.session.changed(key);
  }
}

function lines(conv) {
  let n = 0;
  for (const item of conv.held()) if (item.kind !== "recall") n++;
  return n;
}
