// The conversation list: newest activity first, each with its avatar, name, last line, time
// and unread badge. Rows are kept by conversation and updated in place.

import { h } from "./dom.js";
import { convTitle, hue, initials, preview, shortWhen } from "./format.js";
import { isGroup } from "./protocol.js";

export function avatar(el, conv) {
  el.textContent = initials(conv);
  el.style.setProperty("--hue", hue(conv.key));
  el.classList.toggle("group", isGroup(conv.key));
}

/** When `conv` last had something happen (its last line, or a message waiting to go). */
export function activity(conv, outbox) {
  const pending = outbox.forConv(conv.key);
  const last = conv.last();
  return Math.max(last?.sendTime ?? 0, pending.length ? pending[pending.length - 1].at : 0);
}

export class ConversationList {
  constructor(root, onSelect) {
    this.root = root;
    this.rows = new Map(); // key -> {li, version}
    this.onSelect = onSelect;
  }

  render(session, openKey) {
    const me = session.userId;
    const convs = [...session.inbox.convs.values()].filter((c) => c.started);
    const when = new Map(convs.map((c) => [c.key, activity(c, session.outbox)]));
    convs.sort((a, b) => when.get(b.key) - when.get(a.key) || b.lastSeq - a.lastSeq);
    let total = 0;
    const nodes = convs.map((conv) => {
      const unread = conv.unread(me);
      total += unread;
      const pending = session.outbox.forConv(conv.key);
      const line = pending.length
        ? `You: ${pending[pending.length - 1].payload.body}`
        : preview(conv.last(), me, isGroup(conv.key));
      return this.#row(conv, { unread, line, when: when.get(conv.key), open: conv.key === openKey });
    });
    for (const key of this.rows.keys()) {
      if (!session.inbox.convs.has(key)) this.rows.delete(key);
    }
    this.root.replaceChildren(...nodes);
    return { count: convs.length, unread: total };
  }

  #row(conv, { unread, line, when, open }) {
    let row = this.rows.get(conv.key);
    if (!row) {
      const li = h(
        "li.conv",
        { dataset: { conv: conv.key } },
        h(
          "button.conv-button",
          { type: "button", onclick: () => this.onSelect(conv.key) },
          h("span.avatar"),
          h(
            "span.conv-main",
            {},
            h("span.conv-top", {}, h("span.conv-title"), h("time.conv-time")),
            h("span.conv-bottom", {}, h("span.conv-preview"), h("span.badge")),
          ),
        ),
      );
      row = { li, state: "" };
      this.rows.set(conv.key, row);
    }
    const title = convTitle(conv);
    const state = JSON.stringify([title, unread, line, when, open, conv.left]);
    if (state !== row.state) {
      row.state = state;
      const li = row.li;
      avatar(li.querySelector(".avatar"), conv);
      li.querySelector(".conv-title").textContent = title;
      li.querySelector(".conv-time").textContent = shortWhen(when);
      li.querySelector(".conv-preview").textContent = conv.left && !line ? "You left" : line;
      const badge = li.querySelector(".badge");
      badge.textContent = unread > 99 ? "99+" : String(unread);
      badge.hidden = unread === 0;
      li.classList.toggle("unread", unread > 0);
      li.classList.toggle("left", conv.left);
      if (open) li.setAttribute("aria-current", "true");
      else li.removeAttribute("aria-current");
    }
    return row.li;
  }
}
