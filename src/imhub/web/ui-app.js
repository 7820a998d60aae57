// The chat application's screen: the conversation list beside the open chat (one or the
// other on a narrow screen), the connection state, the composer, dialogs and toasts. It draws
// from the session and turns clicks into session calls; redrawing is batched per frame.

import { Actions } from "./actions.js";
import { $, icon } from "./dom.js";
import { convTitle } from "./format.js";
import { isGroup } from "./protocol.js";
import { State } from "./session.js";
import { ChatView } from "./ui-chat.js";
import { ask, parseIds } from "./ui-dialog.js";
import { ConversationList, avatar } from "./ui-list.js";
import { toast } from "./ui-toast.js";

const STATE_TEXT = {
  [State.CONNECTING]: "Connecting…",
  [State.ONLINE]: "Online",
  [State.RECONNECTING]: "Reconnecting…",
  [State.CLOSED]: "Offline",
};

export class ChatApp {
  constructor(session, { remember, signOut }) {
    this.session = session;
    this.actions = new Actions(session);
    this.remember = remember; // (key) => keep the open conversation across a reload
    this.signOut = signOut;
    this.list = new ConversationList($("#conv-list"), (key) => this.open(key));
    this.chat = new ChatView({
      onOlder: (key) => this.actions.older(key),
      onRecall: (seq) => this.#recall(seq),
    });
    this.dirty = new Set();
    this.frame = 0;
    this.follow = false;
    this.#wire();
    session.on((e) => this.#event(e));
  }

  /** Open conversation `key` (null: none, back to the list on a narrow screen). */
  open(key) {
    const app = $("#app");
    app.classList.toggle("chat-open", Boolean(key));
    if (key !== this.chat.key) {
      this.chat.reset(key);
      this.remember(key);
      this.actions
        .show(key)
        .then(() => key && isGroup(key) && this.actions.info(key))
        .catch((e) => toast(e.message, { kind: "error" }));
      if (key && matchMedia("(hover: hover)").matches) $("#composer-text").focus();
    }
    this.#schedule(key);
    this.#schedule(null);
  }

  #wire() {
    $("#new-chat").append(icon("chat"));
    $("#new-group").append(icon("group"));
    $("#sign-out").append(icon("logout"));
    $("#back").append(icon("back"));
    $("#add-members").append(icon("user-plus"));
    $("#send").append(icon("send"));
    $("#new-chat").onclick = () => this.#newChat();
    $("#new-group").onclick = () => this.#newGroup();
    $("#add-members").onclick = () => this.#addMembers();
    $("#sign-out").onclick = () => this.signOut();
    $("#back").onclick = () => this.open(null);
    const text = $("#composer-text");
    $("#composer").onsubmit = (event) => {
      event.preventDefault();
      this.#send();
    };
    text.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.#send();
      }
    });
    text.addEventListener("input", () => {
      text.style.height = "auto";
      text.style.height = `${Math.min(text.scrollHeight, 160)}px`;
    });
  }

  #send() {
    const text = $("#composer-text");
    const body = text.value.trim();
    const key = this.chat.key;
    if (!body || !key) return;
    try {
      this.session.send(key, body);
    } catch (e) {
      toast(e.message, { kind: "error" });
      return;
    }
    text.value = "";
    text.style.height = "auto";
    this.follow = true;
  }

  async #recall(seq) {
    try {
      await this.actions.recall(this.chat.key, seq);
    } catch (e) {
      toast(`Could not recall: ${e.message}`, { kind: "error" });
    }
  }

  async #newChat() {
    const key = await ask({
      title: "New chat",
      ok: "Start chat",
      fields: [{ name: "user", label: "User id", type: "number", inputmode: "numeric", placeholder: "e.g. 2" }],
      submit: async ({ user }) => this.actions.startChat(parseIds(user)[0]),
    });
    if (key) this.open(key);
  }

  async #newGroup() {
    const key = await ask({
      title: "New group",
      ok: "Create group",
      fields: [
        { name: "name", label: "Group name", maxlength: 50, placeholder: "e.g. Weekend trip" },
        { name: "members", label: "Members", placeholder: "User ids, e.g. 2, 3", hint: "You are a member too." },
      ],
      submit: async ({ name, members }) => this.actions.createGroup(name.trim(), parseIds(members)),
    });
    if (key) this.open(key);
  }

  async #addMembers() {
    const key = this.chat.key;
    const done = await ask({
      title: "Add members",
      ok: "Add",
      fields: [{ name: "members", label: "User ids", placeholder: "e.g. 4, 5" }],
      submit: async ({ members }) => this.actions.addMembers(key, parseIds(members)),
    });
    if (done) this.actions.info(key).catch(() => {});
  }

  #event(e) {
    if (e.type === "conv") this.#schedule(e.key);
    else if (e.type === "synced") {
      this.#schedule(null);
      this.#schedule(this.chat.key);
      this.actions.previews();
    } else if (e.type === "state") this.#state(e);
    else if (e.type === "notice") {
      const n = e.notice;
      const from = n.fromUserId ? `Notice from User ${n.fromUserId}` : "Notice";
      toast(n.body ?? "", { title: from, kind: "notice", timeout: 10_000 });
    } else if (e.type === "error") toast(e.text, { kind: "error" });
  }

  #state({ state }) {
    const el = $("#state");
    el.dataset.state = state;
    el.textContent = STATE_TEXT[state];
    const banner = $("#banner");
    banner.hidden = state === State.ONLINE || state === State.CLOSED;
    banner.textContent =
      state === State.RECONNECTING
        ? "Reconnecting… Messages you write now are sent when the connection is back."
        : "Connecting…";
    if (state === State.ONLINE) {
      const key = this.chat.key;
      if (key) this.actions.fill(key);
      if (key && isGroup(key)) this.actions.info(key).catch(() => {});
    }
  }

  #schedule(key) {
    this.dirty.add(key ?? "*list");
    if (key) this.dirty.add("*list"); // a conversation's change moves the list too
    this.frame ||= requestAnimationFrame(() => this.#draw());
  }

  #draw() {
    this.frame = 0;
    const dirty = this.dirty;
    this.dirty = new Set();
    const s = this.session;
    if (dirty.has("*list")) {
      const { count, unread } = this.list.render(s, this.chat.key);
      $("#list-empty").hidden = count > 0;
      document.title = unread ? `(${unread}) imhub` : "imhub";
    }
    const key = this.chat.key;
    for (const id of ["#chat-head", "#messages", "#composer"]) $(id).hidden = !key;
    $("#chat-none").hidden = Boolean(key);
    if (key && dirty.has(key)) {
      const conv = s.inbox.get(key);
      avatar($("#chat-avatar"), conv);
      $("#chat-name").textContent = convTitle(conv);
      $("#chat-sub").textContent = subtitle(conv, s.userId);
      $("#add-members").hidden = !isGroup(key) || conv.left;
      $("#composer").hidden = conv.left;
      this.chat.render(conv, s, this.follow);
      this.follow = false;
    }
  }
}

function subtitle(conv, me) {
  if (!isGroup(conv.key)) return conv.peerUserId ? `user id ${conv.peerUserId}` : "";
  if (conv.left) return "You are no longer in this group";
  if (!conv.members) return "Group";
  const n = conv.members.length;
  return `${n} member${n === 1 ? "" : "s"}${conv.ownerId === me ? " · you own it" : ""}`;
}
