// Short messages in a corner: notices from the server, refusals, connection news.

import { $, h, icon } from "./dom.js";

export function toast(text, { kind = "info", title = "", timeout = 6000 } = {}) {
  const close = h("button.toast-close", { "aria-label": "Dismiss", title: "Dismiss" }, icon("close"));
  const el = h(
    `div.toast.${kind}`,
    { role: kind === "error" ? "alert" : "status" },
    h("div.toast-body", {}, title ? h("strong", {}, title) : null, h("span", {}, text)),
    close,
  );
  const remove = () => el.remove();
  close.addEventListener("click", remove);
  $("#toasts").append(el);
  if (timeout) setTimeout(remove, timeout);
  return el;
}
