// The wire protocol's names (docs/protocol.md) and how a conversation is keyed here:
// "c5" is the one-to-one chat 5, "t7" the group 7.

export const MsgType = Object.freeze({
  HEARTBEAT: 0,
  LOGIN: 1,
  LOGOUT: 2,
  CHAT: 3,
  CHAT_ANSWER: 4,
  CHAT_ENTER: 5,
  CHAT_QUIT: 6,
  NOTICE: 7,
  ERROR: 8,
  UNREAD: 9,
  RECALL: 10,
  SYNC: 11,
  READ: 12,
  RECEIPTS: 13,
  HISTORY: 14,
  CONVS: 15,
  TEAM_CREATE: 16,
  TEAM_ADD: 17,
  TEAM_REMOVE: 18,
  TEAM_LEAVE: 19,
  TEAM_RENAME: 20,
  TEAM_DISMISS: 21,
  TEAM_INFO: 22,
});

export const CLIENT_TYPE_WEB = 4;
export const UNAUTHORIZED = 401;

/** Whether msgType `t` is a group event (created, added, removed, left, renamed, dissolved). */
export function isGroupEvent(t) {
  return t >= MsgType.TEAM_CREATE && t <= MsgType.TEAM_DISMISS;
}

/** The key of the conversation a message or conversation object names, or null. */
export function convKey(obj) {
  if (obj.teamId) return `t${obj.teamId}`;
  if (obj.chatId) return `c${obj.chatId}`;
  return null;
}

/** The wire address of a key: {chatId} or {teamId}. */
export function address(key) {
  const id = Number(key.slice(1));
  return key[0] === "t" ? { teamId: id } : { chatId: id };
}

export function isGroup(key) {
  return key[0] === "t";
}

/** A fresh msgIdClient (1–50 characters; a UUID, as the protocol suggests). */
export function newId() {
  if (crypto.randomUUID) return crypto.randomUUID(); // only in secure contexts (127.0.0.1 is one)
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}
