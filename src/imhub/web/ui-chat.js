// The open conversation: its messages oldest first (with day separators), group events as
// lines of their own, messages still on their way, read marks on one's own messages the other
// user has read, and recall. Earlier messages load as the view is scrolled to the top.

import { $, h, icon } from "./dom.js";
import { dayOf, kindOf, timeOf, userName } from "./format.js";
import { isGroup } from "./protocol.js";

const NEAR_TOP = 120; // px from the top at which the next history page is asked for
const NEAR_BOTTOM = 80; // px: a view this close to the bottom follows new messages

export class ChatView {
  constructor({ onOlder, onRecall }) {
    this.scroller = $("#messages");
    this.list = $("#message-list");
    this.older = $("#older");
    this.onOlder = onOlder;
    this.onRecall = onRecall;
    this.key = null;
    this.low = null;
    this.stick = true;
    this.nodes = new Map(); // "s<seq>" or "p<msgIdClient>" -> {el, state}
    this.scroller.addEventListener("scroll", () => this.#scrolled(), { passive: true });
  }

  /** Show another conversation (or none). */
  reset(key) {
    this.key = key;
    this.low = null; // the lowest seq drawn: history pages come in below it
    this.nodes.clear();
    this.list.replaceChildren();
    this.stick = true;
  }

  /** Draw `conv` as it is now; `follow`: scroll to the newest (after one's own send). */
  render(conv, session, follow = false) {
    const me = session.userId;
    const group = isGroup(conv.key);
    const atBottom = this.#atBottom();
    const fromBottom = this.scroller.scrollHeight - this.scroller.scrollTop;
    const prepended = this.low !== null && conv.low < this.low;
    this.low = conv.low;
    const wanted = [];
    let day = "";
    const dayLine = (ms) => {
      const d = ms ? dayOf(ms) : "";
      if (d && d !== day) {
        day = d;
        wanted.push(this.#node(`d${d}`, d, () => h("li.day", {}, h("span", {}, d))));
      }
    };
    let prev = null;
    for (const item of conv.held()) {
      if (item.kind === "recall") continue;
      dayLine(item.sendTime);
      if (item.kind === "event") {
        wanted.push(this.#node(`s${item.seq}`, item.body, () => h("li.event", {}, item.body)));
        prev = null;
        continue;
      }
      const read = !group && item.fromUserId === me && item.seq <= conv.peerReadSeq;
      const first = prev?.fromUserId !== item.fromUserId;
      const state = [item.recalled, read, first, item.body].join("|");
      wanted.push(this.#node(`s${item.seq}`, state, () => this.#message(item, me, group, read, first, conv.left)));
      prev = item;
    }
    for (const entry of session.outbox.forConv(conv.key)) {
      const p = entry.payload;
      dayLine(entry.at);
      const item = { seq: 0, fromUserId: me, body: p.body, bodyType: p.bodyType, sendTime: entry.at };
      wanted.push(this.#node(`p${p.msgIdClient}`, "pending", () => this.#message(item, me, group, false, prev?.fromUserId !== me, false, p.msgIdClient)));
      prev = item;
    }
    this.list.replaceChildren(...wanted);
    this.older.hidden = !conv.hasOlder;
    if (follow || (atBottom && this.stick)) {
      this.scroller.scrollTop = this.scroller.scrollHeight;
    } else if (prepended) {
      this.scroller.scrollTop = this.scroller.scrollHeight - fromBottom; // keep what was shown
    }
    // The top is in view (still at it, or history too short to fill the view, which cannot
    // scroll and so sends no scroll event): the next page.
    if (conv.hasOlder && this.scroller.scrollTop < NEAR_TOP) this.onOlder(this.key);
  }

  #node(id, state, make) {
    const known = this.nodes.get(id);
    if (known && known.state === state) return known.el;
    const el = make();
    this.nodes.set(id, { el, state });
    return el;
  }

  #message(item, me, group, read, first, left, pendingId = "") {
    const mine = item.fromUserId === me;
    const classes = ["msg", mine ? "mine" : "theirs"];
    if (first) classes.push("first");
    if (pendingId) classes.push("pending");
    if (item.recalled) classes.push("recalled");
    const attrs = pendingId ? { dataset: { pending: pendingId } } : { dataset: { seq: item.seq } };
    let text;
    if (item.recalled) {
      text = h("p.text", {}, mine ? "You recalled this message" : "This message was recalled");
    } else if (item.bodyType === 0) {
      text = h("p.text", {}, item.body);
    } else {
      text = h("p.text", {}, h("span.kind", {}, kindOf(item.bodyType)), " ", item.body);
    }
    const status = pendingId
      ? h("span.status.sending", { title: "Sending" }, icon("clock"))
      : mine && !item.recalled
        ? h(
            `span.status${read ? ".read" : ""}`,
            { title: read ? "Read" : "Sent" },
            icon(read ? "checks" : "check"),
            read ? h("span.read-label", {}, "read") : null,
          )
        : null;
    const recall =
      mine && !pendingId && !item.recalled && !left
        ? h(
            "button.recall",
            { type: "button", title: "Recall", onclick: () => this.onRecall(item.seq) },
            icon("undo"),
            h("span", {}, "Recall"),
          )
        : null;
    return h(
      `li.${classes.join(".")}`,
      attrs,
      h(
        "div.bubble",
        { tabindex: mine ? 0 : null },
        group && !mine && first ? h("span.sender", {}, userName(item.fromUserId, me)) : null,
        text,
        h("span.meta", {}, h("time", {}, timeOf(item.sendTime)), status),
      ),
      recall,
    );
  }

  #atBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < NEAR_BOTTOM;
  }

  #scrolled() {
    this.stick = this.#atBottom();
    if (this.key && this.scroller.scrollTop < NEAR_TOP) this.onOlder(this.key);
  }
}
