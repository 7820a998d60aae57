// Messages sent but not yet answered by the server (no I/O but the storage it is given,
// localStorage in the page). Each entry is saved before it is first written, under its own
// key ("imhub.outbox.<user>.<msgIdClient>"), so a reload (or another tab of the same user)
// finds it and sends it again with the same msgIdClient: the server stores it once.

const PREFIX = "imhub.outbox.";
const REMEMBER = 1000; // answered ids kept, to recognise this client's messages coming back

export class Outbox {
  constructor(storage) {
    this.storage = storage;
    this.user = 0;
    this.entries = new Map(); // msgIdClient -> {payload, conv, at, conn}
    this.answered = new Set();
  }

  /** Take over what was saved for `user` (at each login: a reload's unanswered sends). */
  load(user) {
    this.user = user;
    const prefix = `${PREFIX}${user}.`;
    const saved = [];
    for (let i = 0; i < this.storage.length; i++) {
      const name = this.storage.key(i);
      if (!name?.startsWith(prefix)) continue;
      try {
        saved.push(JSON.parse(this.storage.getItem(name)));
      } catch {
        this.storage.removeItem(name); // not ours to read: never resendable
      }
    }
    saved.sort((a, b) => a.at - b.at);
    for (const entry of saved) {
      const mid = entry.payload?.msgIdClient;
      if (mid && !this.entries.has(mid) && !this.answered.has(mid)) {
        this.entries.set(mid, { ...entry, conn: 0 });
      }
    }
  }

  /** A new message to send to conversation `conv`: saved, then kept until answered. */
  add(payload, conv) {
    const entry = { payload, conv, at: Date.now(), conn: 0 };
    this.storage.setItem(this.#name(payload.msgIdClient), JSON.stringify(entry));
    this.entries.set(payload.msgIdClient, entry);
    return entry;
  }

  has(mid) {
    return this.entries.has(mid);
  }

  /** Whether `mid` names a message of this client (waiting, or answered lately). */
  mine(mid) {
    return this.entries.has(mid) || this.answered.has(mid);
  }

  /** The entry `mid` is settled (`stored`: answered, or seen stored): forget it. */
  take(mid, stored) {
    const entry = this.entries.get(mid);
    if (!entry) return null;
    this.entries.delete(mid);
    this.storage.removeItem(this.#name(mid));
    if (stored) {
      this.answered.add(mid);
      if (this.answered.size > REMEMBER) this.answered.delete(this.answered.values().next().value);
    }
    return entry;
  }

  /** Entries not written on connection `conn` yet, oldest first. */
  unsent(conn) {
    return [...this.entries.values()].filter((e) => e.conn !== conn);
  }

  /** The entries waiting in conversation `conv`, oldest first. */
  forConv(conv) {
    return [...this.entries.values()].filter((e) => e.conv === conv);
  }

  #name(mid) {
    return `${PREFIX}${this.user}.${mid}`;
  }
}
