// The page's entry point: find a token (#token=… in the address, or the one this tab signed
// in with), or ask for one; then run the session over a WebSocket and show the chat.

import { $ } from "./dom.js";
import { Connection } from "./connection.js";
import { Session, State } from "./session.js";
import { ChatApp } from "./ui-app.js";

const TOKEN = "imhub.token"; // sessionStorage: the token this tab signed in with

function tokenFromAddress() {
  const params = new URLSearchParams(location.hash.slice(1));
  return params.get("token");
}

/** The user id a token names (its "sub"), read without checking it: the server does. */
function userOf(token) {
  try {
    const part = token.split(".")[1].replaceAll("-", "+").replaceAll("_", "/");
    return String(JSON.parse(atob(part)).sub ?? "");
  } catch {
    return "";
  }
}

function show(view) {
  for (const id of ["splash", "login", "app"]) $(`#${id}`).hidden = id !== view;
}

function askForToken(error = "") {
  show("login");
  const message = $("#login-error");
  message.textContent = error;
  message.hidden = !error;
  const form = $("#login-form");
  form.onsubmit = (event) => {
    event.preventDefault();
    const token = $("#login-token").value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN, token);
    location.reload(); // a clean page for this token
  };
  $("#login-token").focus();
}

function start(token) {
  show("splash");
  $("#splash-text").textContent = "Connecting…";
  // Timings may be set before the page loads (the browser tests shorten the heartbeat).
  const options = globalThis.imhubOptions ?? {};
  const session = new Session(token, localStorage, options.session);
  const where = `imhub.open.${userOf(token)}`;
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
  const connection = new Connection(session, url, options.connection);
  const app = new ChatApp(session, {
    remember: (key) => (key ? sessionStorage.setItem(where, key) : sessionStorage.removeItem(where)),
    signOut: () => session.logout(),
  });
  let shown = false;
  session.on((e) => {
    if (e.type === "state" && e.state === State.ONLINE && !shown) {
      shown = true;
      $("#me-name").textContent = `User ${session.userId}`;
      $("#me-avatar").textContent = String(session.userId);
      show("app");
    } else if (e.type === "state" && e.state === State.CLOSED) {
      sessionStorage.removeItem(TOKEN);
      history.replaceState(null, "", location.pathname); // the address's token is spent
      const signedOut = e.reason === "signed out";
      if (signedOut) location.reload(); // a clean page for the next user
      else askForToken(e.reason);
    }
  });
  const open = sessionStorage.getItem(where);
  if (open) app.open(open);
  connection.start();
  window.imhub = { session, app }; // for the curious, and for the browser tests
}

const token = tokenFromAddress() ?? sessionStorage.getItem(TOKEN);
if (token) {
  // The tab keeps it (a reload signs in again); the address does not show it to whoever
  // looks at the screen, a bookmark or a shared link.
  sessionStorage.setItem(TOKEN, token);
  history.replaceState(null, "", location.pathname);
  start(token);
}
else askForToken();
