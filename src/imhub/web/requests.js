// Requests waiting for their answer, matched by msgIdClient (no I/O). Each is settled by its
// answer, by an error naming it, by its deadline, or by the connection dropping.

import { MsgType } from "./protocol.js";

export class RequestError extends Error {
  constructor(code, reason) {
    super(reason || `refused (${code})`);
    this.code = code;
  }
}

export class Requests {
  constructor(timeout) {
    this.timeout = timeout;
    this.open = new Map(); // rid -> {resolve, reject, deadline, what}
    this.next = 0;
  }

  /** A new request: returns [rid, promise]; `what` names it in errors. */
  add(now, what) {
    const rid = `q-${++this.next}-${Math.random().toString(36).slice(2, 8)}`;
    const promise = new Promise((resolve, reject) => {
      this.open.set(rid, { resolve, reject, deadline: now + this.timeout, what });
    });
    return [rid, promise];
  }

  has(rid) {
    return this.open.has(rid);
  }

  /** The answer (or the error) for `rid` arrived. */
  settle(rid, msg) {
    const call = this.open.get(rid);
    if (!call) return;
    this.open.delete(rid);
    if (msg.msgType === MsgType.ERROR) call.reject(new RequestError(msg.code, msg.reason));
    else call.resolve(msg);
  }

  /** Fail every request past its deadline; returns how many. */
  expire(now) {
    let n = 0;
    for (const [rid, call] of this.open) {
      if (now >= call.deadline) {
        this.open.delete(rid);
        call.reject(new RequestError(0, `no answer to ${call.what}`));
        n++;
      }
    }
    return n;
  }

  /** The connection is gone: every request fails (it may or may not have been applied). */
  failAll(reason) {
    const calls = [...this.open.values()];
    this.open.clear();
    for (const call of calls) call.reject(new RequestError(0, reason));
  }
}
