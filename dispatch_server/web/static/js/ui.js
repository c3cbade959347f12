// Small DOM helpers shared by the pages.

import {
  canRefresh,
  getUser,
  isLoggedIn,
  login,
  refreshSession,
  SESSION_EVENT,
  sessionExpiresAt,
  signOut,
  UNAUTHORIZED_EVENT,
} from "./api.js";

/** Renew the access token this long before it expires. */
const REFRESH_AHEAD_MS = 60000;
/** After a refresh that could not reach the server, try again this soon. */
const REFRESH_RETRY_MS = 10000;

/** Create an element: el("span", {class: "x", dataset: {id: 1}}, "text", child). */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name === "text") node.textContent = value;
    else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** Local wall-clock time (HH:MM:SS) of an ISO 8601 timestamp; "" when absent or invalid. */
export function formatTime(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
}

/** "1:05" / "0:09" / "1:02:03" for a duration in seconds (clamped at 0). */
export function formatDuration(seconds) {
  const total = Math.max(0, Math.floor(seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

/** Seconds until an ISO deadline (negative once it has passed); null without a deadline. */
export function secondsUntil(iso) {
  if (!iso) return null;
  const time = new Date(iso).getTime();
  return Number.isNaN(time) ? null : (time - Date.now()) / 1000;
}

// ---- message area ---------------------------------------------------------

let messageTimer = null;

/** Show an error (or a notice with kind "info") in #message; errors stay until dismissed. */
export function showMessage(text, kind = "error") {
  const box = document.getElementById("message");
  if (!box) return;
  clearTimeout(messageTimer);
  box.replaceChildren(
    el("span", { class: "message-text" }, text),
    el("button", { type: "button", class: "message-close", "aria-label": "Dismiss" }, "×"),
  );
  box.dataset.kind = kind;
  box.hidden = false;
  box.querySelector(".message-close").addEventListener("click", clearMessage);
  if (kind === "info") messageTimer = setTimeout(clearMessage, 5000);
}

export function clearMessage() {
  const box = document.getElementById("message");
  if (!box) return;
  clearTimeout(messageTimer);
  box.hidden = true;
  box.replaceChildren();
  delete box.dataset.kind;
}

export function errorText(error) {
  return error && error.message ? error.message : String(error);
}

// ---- connection status ----------------------------------------------------

const STATUS_LABELS = {
  connecting: ["connecting", "连接中"],
  connected: ["connected", "已连接"],
  reconnecting: ["reconnecting", "重连中"],
  unauthorized: ["signed out", "已退出"],
  closed: ["offline", "离线"],
};

/** Reflect a connectEvents() status in #connection-status (text and data-status). */
export function showConnectionStatus(status, info = {}) {
  const node = document.getElementById("connection-status");
  if (!node) return;
  node.dataset.status = status;
  let [english, chinese] = STATUS_LABELS[status] || [status, ""];
  if (status === "reconnecting" && info.delayMs) english = `${english} in ${Math.ceil(info.delayMs / 1000)} s`;
  node.replaceChildren(english, " ", el("span", { lang: "zh" }, chinese));
}

// ---- login ----------------------------------------------------------------

/** Wire #login-form: on success clears it and calls onLoggedIn(user); errors go to #message. */
export function bindLoginForm(onLoggedIn) {
  const form = document.getElementById("login-form");
  const button = form.querySelector("button[type=submit]");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const username = form.querySelector("#username").value.trim();
    const password = form.querySelector("#password").value;
    if (!username || !password) {
      showMessage("Enter your username and password 请输入用户名和密码");
      return;
    }
    button.disabled = true;
    form.setAttribute("aria-busy", "true");
    try {
      const user = await login(username, password);
      clearMessage();
      form.reset();
      onLoggedIn(user);
    } catch (error) {
      showMessage(errorText(error));
    } finally {
      button.disabled = false;
      form.removeAttribute("aria-busy");
    }
  });
}

/** Toggle between #login-view and #app-view, and fill the header's user slot. */
export function showView(user) {
  document.getElementById("login-view").hidden = Boolean(user);
  document.getElementById("app-view").hidden = !user;
  document.getElementById("session").hidden = !user;
  const name = document.getElementById("user-name");
  if (name) name.textContent = user ? `${user.display_name || user.username}` : "";
  const role = document.getElementById("user-role");
  if (role) role.textContent = user ? user.role.replaceAll("_", " ") : "";
  if (!user) document.getElementById("username")?.focus();
}

let refreshTimer = null;

/** Renew the access token shortly before it expires (again after each renewal). */
function scheduleRefresh() {
  clearTimeout(refreshTimer);
  refreshTimer = null;
  const expiresAt = sessionExpiresAt();
  if (!expiresAt || !canRefresh()) return;
  const remaining = expiresAt - Date.now();
  const delay = Math.max(0, remaining - Math.min(REFRESH_AHEAD_MS, remaining / 2));
  refreshTimer = setTimeout(() => {
    refreshSession().catch((error) => {
      // 401: the sign-in has ended, UNAUTHORIZED_EVENT has fired. Otherwise: offline, retry.
      if (error.status !== 401) refreshTimer = setTimeout(scheduleRefresh, REFRESH_RETRY_MS);
    });
  }, delay);
}

/**
 * Wire a page's session: the login form, "Log out", renewing the access token before it expires,
 * a sign-in that ends while the page is open, and a page opened while already signed in.
 *   start(user)   begin the page's work for a signed-in user
 *   stop()        end it (log out)
 *   isActive()    whether a user is signed in on this page now
 *   onExpired()   what an expired sign-in stops (default: stop); runs after the login form shows
 */
export function bindSession({ start, stop, isActive, onExpired = stop }) {
  bindLoginForm(start);
  window.addEventListener(SESSION_EVENT, scheduleRefresh);
  document.getElementById("logout").addEventListener("click", () => {
    stop();
    clearTimeout(refreshTimer);
    signOut();
    clearMessage();
    showView(null);
  });
  window.addEventListener(UNAUTHORIZED_EVENT, (event) => {
    clearTimeout(refreshTimer);
    if (!isActive()) return;
    showView(null);
    onExpired();
    showMessage(`${event.detail || "Session expired"} — please log in again. 请重新登录`);
  });
  if (isLoggedIn()) {
    scheduleRefresh();
    start(getUser());
  } else if (canRefresh()) {
    // Opened (or reloaded) after the access token expired: renew it if the sign-in still lasts.
    refreshSession()
      .then((user) => start(user))
      .catch(() => showView(null));
  } else showView(null);
}

/** How long to wait before retry number `failures` (1, 2, …): 2 s doubling up to 30 s. */
export function retryDelay(failures) {
  return Math.min(30000, 2000 * 2 ** (failures - 1));
}
