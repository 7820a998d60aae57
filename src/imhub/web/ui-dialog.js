// One modal form at a time (a <dialog>): fields in, values out. `submit(values)` may throw
// (a refusal from the server): the message shows in the dialog, which stays open.

import { $, h } from "./dom.js";

export function ask({ title, fields, ok, submit }) {
  const dialog = $("#dialog");
  const form = $("#dialog-form");
  const error = $("#dialog-error");
  $("#dialog-title").textContent = title;
  $("#dialog-ok").textContent = ok;
  error.hidden = true;
  $("#dialog-fields").replaceChildren(
    ...fields.map((f) =>
      h(
        "label.field",
        {},
        h("span", {}, f.label),
        h("input", {
          name: f.name,
          type: f.type ?? "text",
          placeholder: f.placeholder ?? "",
          required: f.required ?? true,
          maxlength: f.maxlength,
          inputmode: f.inputmode,
          autocomplete: "off",
        }),
        f.hint ? h("small.muted", {}, f.hint) : null,
      ),
    ),
  );
  return new Promise((resolve) => {
    const finish = (value) => {
      form.onsubmit = null;
      $("#dialog-cancel").onclick = null;
      dialog.onclose = null;
      if (dialog.open) dialog.close();
      resolve(value);
    };
    form.onsubmit = async (event) => {
      event.preventDefault();
      const values = Object.fromEntries(new FormData(form));
      const button = $("#dialog-ok");
      button.disabled = true;
      try {
        finish(await submit(values));
      } catch (e) {
        error.textContent = e.message;
        error.hidden = false;
      } finally {
        button.disabled = false;
      }
    };
    $("#dialog-cancel").onclick = () => finish(null);
    dialog.onclose = () => finish(null);
    dialog.showModal();
    form.querySelector("input")?.focus();
  });
}

/** "3, 4 5" → [3, 4, 5]; throws on anything that is not a user id. */
export function parseIds(text) {
  const parts = String(text).split(/[\s,;]+/).filter(Boolean);
  const ids = parts.map((p) => Number(p));
  if (!ids.length || ids.some((n) => !Number.isSafeInteger(n) || n < 1)) {
    throw new Error("Give user ids: whole numbers, separated by commas or spaces.");
  }
  return [...new Set(ids)];
}
