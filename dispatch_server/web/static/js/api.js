// Zhihui browser client for the dispatch server: session, REST helper, websocket events.
// Contract: docs/api.md. No framework, no build step.

const TOKEN_KEY = "zhihui.token";
const REFRESH_KEY = "zhihui.refresh_token";
const USER_KEY = "zhihui.user";
const EXPIRES_KEY = "zhihui.expires_at";

const BACKOFF_INITIAL_MS = 1000;
const BACKOFF_MAX_MS = 30000;

/** Event dispatched on `window` when the sign-in has ended (the refresh token is refused too). */
export const UNAUTHORIZED_EVENT = "zhihui:unauthorized";
/** Event dispatched on `window` after a sign-in or a refresh stored new tokens. */
export const SESSION_EVENT = "zhihui:session";

/** An HTTP error from the dispatch server; `message` is the server's `detail`. */
export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.name = "ApiError";
    this.status = status;
  }
}

// ---- pure helpers ---------------------------------------------------------

/** The human-readable message in an error body: `detail` as a string, or FastAPI's list form. */
export function detailMessage(body, fallback) {
  if (body && typeof body === "object" && "detail" in body) {
    const { detail } = body;
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) {
      return detail
        .map((item) => (item && item.msg ? item.msg : JSON.stringify(item)))
        .join("; ");
    }
    return JSON.stringify(detail);
  }
  return fallback;
}

/** The websocket URL for `path` on this page's host (wss:// under https). */
export function websocketUrl(path = "/ws") {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}`;
}

// ---- session --------------------------------------------------------------

export function getToken() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const expiresAt = Number(sessionStorage.getItem(EXPIRES_KEY) || 0);
  if (!token || (expiresAt && Date.now() >= expiresAt)) return null;
  return token;
}

export function getUser() {
  const raw = sessionStorage.getItem(USER_KEY);
  if (!raw) return null;
  try {
    return JSON.parse(raw);
  } catch {
    return null;
  }
}

export function isLoggedIn() {
  return getToken() !== null && getUser() !== null;
}

/** Whether a sign-in can be renewed (its access token may have expired meanwhile). */
export function canRefresh() {
  return sessionStorage.getItem(REFRESH_KEY) !== null && getUser() !== null;
}

/** When the access token expires (ms since the epoch), or null. */
export function sessionExpiresAt() {
  const expiresAt = Number(sessionStorage.getItem(EXPIRES_KEY) || 0);
  return expiresAt || null;
}

function storeSession(answer) {
  sessionStorage.setItem(TOKEN_KEY, answer.access_token);
  sessionStorage.setItem(USER_KEY, JSON.stringify(answer.user));
  if (answer.refresh_token) sessionStorage.setItem(REFRESH_KEY, answer.refresh_token);
  if (answer.expires_in) {
    sessionStorage.setItem(EXPIRES_KEY, String(Date.now() + answer.expires_in * 1000));
  } else {
    sessionStorage.removeItem(EXPIRES_KEY);
  }
  window.dispatchEvent(new CustomEvent(SESSION_EVENT));
}

/** Log in; stores the tokens and user in sessionStorage and returns the user. */
export async function login(username, password) {
  const answer = await request("/api/auth/login", {
    method: "POST",
    body: { username, password },
    authorized: false,
  });
  storeSession(answer);
  return answer.user;
}

let refreshing = null; // the refresh on its way: a refresh token is good once, so callers share it

/**
 * Exchange the refresh token for new tokens (one exchange at a time for the whole page).
 * Resolves to the user. When the server refuses it the sign-in is over: the session is forgotten,
 * UNAUTHORIZED_EVENT fires and the ApiError (401) is thrown. A network failure keeps the session.
 */
export function refreshSession() {
  if (refreshing) return refreshing;
  const refreshToken = sessionStorage.getItem(REFRESH_KEY);
  if (!refreshToken) return Promise.reject(new ApiError(401, "Session expired, please log in again"));
  refreshing = request("/api/auth/refresh", {
    method: "POST",
    body: { refresh_token: refreshToken },
    authorized: false,
  })
    .then((answer) => {
      storeSession(answer);
      return answer.user;
    })
    .catch((error) => {
      if (error.status === 401) {
        logout();
        window.dispatchEvent(new CustomEvent(UNAUTHORIZED_EVENT, { detail: error.message }));
      }
      throw error;
    })
    .finally(() => {
      refreshing = null;
    });
  return refreshing;
}

/** Forget the session in this tab. */
export function logout() {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(REFRESH_KEY);
  sessionStorage.removeItem(USER_KEY);
  sessionStorage.removeItem(EXPIRES_KEY);
}

/** End the sign-in on the server too (its refresh token stops working), then forget it. */
export function signOut() {
  const refreshToken = sessionStorage.getItem(REFRESH_KEY);
  logout();
  if (!refreshToken) return;
  fetch("/api/auth/logout", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ refresh_token: refreshToken }),
    keepalive: true,
  }).catch(() => {}); // offline: the sign-in still ends when it expires
}

// ---- REST -----------------------------------------------------------------

async function request(path, { method = "GET", body, authorized = true, retried = false } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (authorized) {
    let token = getToken();
    if (!token && canRefresh()) {
      await refreshSession();
      token = getToken();
    }
    if (!token) {
      window.dispatchEvent(new CustomEvent(UNAUTHORIZED_EVENT));
      throw new ApiError(401, "Session expired, please log in again");
    }
    headers.Authorization = `Bearer ${token}`;
  }

  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    throw new ApiError(0, `Cannot reach the server (${error.message})`);
  }

  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }

  if (!response.ok) {
    const fallback = typeof data === "string" && data ? data : `${response.status} ${response.statusText}`;
    const error = new ApiError(response.status, detailMessage(data, fallback));
    if (response.status === 401 && authorized && !retried && canRefresh()) {
      // The access token was refused (expired while on its way): renew it once and try again.
      await refreshSession();
      return request(path, { method, body, authorized, retried: true });
    }
    if (response.status === 401 && authorized) {
      logout();
      window.dispatchEvent(new CustomEvent(UNAUTHORIZED_EVENT, { detail: error.message }));
    }
    throw error;
  }
  return data;
}

/**
 * Authorized JSON request to the dispatch server.
 * Resolves to the parsed answer (null when empty); throws ApiError with the server's `detail`.
 */
export function api(path, { method = "GET", body } = {}) {
  return request(path, { method, body, authorized: true });
}

// ---- websocket ------------------------------------------------------------

/**
 * Connect to /ws, authenticate, and keep reconnecting with backoff until `close()`.
 * On reconnect it sends the last event id it saw, so the server replays what was missed (each
 * event once, in order) before the live ones.
 *
 * onMessage(message) gets every parsed server message (including `ready`).
 * onStatus(status, info) gets one of:
 *   "connecting", "connected" (after `ready`), "reconnecting" (info.delayMs),
 *   "unauthorized" (token refused; no further retries), "closed" (after close()).
 *
 * Returns { send(message) -> bool, close(), isReady() }.
 */
export function connectEvents(onMessage, onStatus = () => {}) {
  let socket = null;
  let ready = false;
  let stopped = false;
  let attempt = 0;
  let retryTimer = null;
  let lastEventId = null; // the newest `event_id` seen; the server's cursor after `ready`

  const report = (status, info = {}) => {
    try {
      onStatus(status, info);
    } catch (error) {
      console.error("connection status handler failed", error);
    }
  };

  const scheduleRetry = () => {
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_INITIAL_MS * 2 ** attempt);
    const delayMs = Math.round(base / 2 + Math.random() * (base / 2));
    attempt += 1;
    report("reconnecting", { delayMs });
    retryTimer = setTimeout(open, delayMs);
  };

  let renewed = false; // whether the token was just renewed because the server refused it

  /** Renew the sign-in, then connect again; give up when the sign-in has ended. */
  function renewAndOpen() {
    refreshSession()
      .then(() => {
        renewed = true;
        open();
      })
      .catch((error) => {
        if (error.status === 401) {
          stopped = true;
          report("unauthorized");
        } else if (!stopped) {
          scheduleRetry(); // the server is out of reach: try again later
        }
      });
  }

  function open() {
    retryTimer = null;
    if (stopped) return;
    const token = getToken();
    if (!token) {
      if (canRefresh()) {
        renewAndOpen();
        return;
      }
      stopped = true;
      report("unauthorized");
      window.dispatchEvent(new CustomEvent(UNAUTHORIZED_EVENT));
      return;
    }

    report("connecting");
    ready = false;
    const ws = new WebSocket(websocketUrl("/ws"));
    socket = ws;

    ws.addEventListener("open", () => {
      const auth = { type: "auth", token };
      if (lastEventId !== null) auth.last_event_id = lastEventId;
      ws.send(JSON.stringify(auth));
    });

    ws.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        console.warn("ignoring non-JSON websocket message", event.data);
        return;
      }
      if (message.type === "ready") {
        // Ours when the server resumed from it; its own newest when it could not (another database).
        if (Number.isInteger(message.last_event_id)) lastEventId = message.last_event_id;
        ready = true;
        renewed = false;
        attempt = 0;
        report("connected", { user: message.user });
      } else if (Number.isInteger(message.event_id) && (lastEventId === null || message.event_id > lastEventId)) {
        lastEventId = message.event_id;
      }
      try {
        onMessage(message);
      } catch (error) {
        console.error("websocket message handler failed", error);
      }
    });

    ws.addEventListener("close", (event) => {
      const wasReady = ready;
      ready = false;
      if (socket === ws) socket = null;
      if (stopped) return;
      // 1008 before `ready` means the server refused our token: renew it once, else give up.
      if (event.code === 1008 && !wasReady && !renewed && canRefresh()) {
        renewAndOpen();
        return;
      }
      if (event.code === 1008 && !wasReady) {
        stopped = true;
        report("unauthorized", { reason: event.reason });
        logout();
        window.dispatchEvent(new CustomEvent(UNAUTHORIZED_EVENT, { detail: event.reason }));
        return;
      }
      scheduleRetry();
    });
    // An "error" event is always followed by "close"; the retry happens there.
  }

  open();

  return {
    /** Send a JSON message; false when the socket is not authenticated yet. */
    send(message) {
      if (!socket || !ready || socket.readyState !== WebSocket.OPEN) return false;
      socket.send(JSON.stringify(message));
      return true;
    },
    isReady() {
      return ready && socket !== null && socket.readyState === WebSocket.OPEN;
    },
    close() {
      stopped = true;
      if (retryTimer) clearTimeout(retryTimer);
      retryTimer = null;
      if (socket) socket.close(1000, "client closed");
      socket = null;
      ready = false;
      report("closed");
    },
  };
}
