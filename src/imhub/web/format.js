// How people, conversations and times read on screen. The protocol carries user ids only
// (no profiles), so a user is "User 7"; a group has its name.

import { isGroup } from "./protocol.js";

export function userName(id, me) {
  return id === me ? "You" : `User ${id}`;
}

export function convTitle(conv) {
  if (isGroup(conv.key)) return conv.teamName || `Group ${conv.teamId}`;
  return conv.peerUserId ? `User ${conv.peerUserId}` : `Chat ${conv.chatId}`;
}

/** Initials for an avatar. */
export function initials(conv) {
  if (isGroup(conv.key)) {
    const words = (conv.teamName || "G").trim().split(/\s+/);
    return words.slice(0, 2).map((w) => [...w][0].toUpperCase()).join("");
  }
  return conv.peerUserId ? String(conv.peerUserId) : "?";
}

/** A stable hue for an avatar, from its key. */
export function hue(text) {
  let x = 0;
  for (const ch of text) x = (x * 31 + ch.codePointAt(0)) % 360;
  return x;
}

const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const weekday = new Intl.DateTimeFormat(undefined, { weekday: "short" });
const date = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short" });
const fullDate = new Intl.DateTimeFormat(undefined, {
  weekday: "long",
  day: "numeric",
  month: "long",
});

export function timeOf(ms) {
  return ms ? clock.format(ms) : "";
}

/** A list's timestamp: the time today, the weekday this week, else the date. */
export function shortWhen(ms, now = Date.now()) {
  if (!ms) return "";
  const d = new Date(ms);
  const today = new Date(now);
  if (d.toDateString() === today.toDateString()) return clock.format(d);
  if (now - ms < 6 * 86_400_000) return weekday.format(d);
  return date.format(d);
}

export function dayOf(ms, now = Date.now()) {
  const d = new Date(ms);
  if (d.toDateString() === new Date(now).toDateString()) return "Today";
  if (d.toDateString() === new Date(now - 86_400_000).toDateString()) return "Yesterday";
  return fullDate.format(d);
}

/** One line about an item, for the conversation list. */
export function preview(item, me, group) {
  if (!item) return "";
  if (item.kind === "event") return item.body;
  if (item.recalled) return item.fromUserId === me ? "You recalled a message" : "Message recalled";
  const who = item.fromUserId === me ? "You: " : group ? `User ${item.fromUserId}: ` : "";
  return who + (item.bodyType === 0 ? item.body : `[${KINDS[item.bodyType] ?? "message"}]`);
}

const KINDS = ["text", "image", "voice", "video", "file", "location", "link", "tips", "notice"];

export function kindOf(bodyType) {
  return KINDS[bodyType] ?? "message";
}
