// The two ways the page talks to the server: JSON over fetch, and the chat websocket.
import { config, t } from "./util.js";

export class ApiError extends Error {
  constructor(code, message, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

// fetch() with the CSRF token Django expects on every write, and errors as ApiError. A
// FormData body goes as multipart (the browser sets its boundary); anything else as JSON.
export async function api(url, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRFToken"] = config.csrf_token;
  const form = body instanceof FormData;
  if (body !== undefined && !form) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      body: body === undefined || form ? body : JSON.stringify(body),
      credentials: "same-origin",
    });
  } catch {
    throw new ApiError("offline", t("Parley could not be reached. Check your connection."), 0);
  }
  if (response.status === 401) {
    window.location.assign(`${config.urls.login}?next=${encodeURIComponent(window.location.pathname)}`);
    throw new ApiError("session_ended", t("Please sign in again."), 401);
  }
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new ApiError(error.code || "internal_error", error.message || t("Something went wrong. Please try again."), response.status);
  }
  return data;
}

// The chat websocket (docs/websocket-protocol.md): one per tab, reconnecting with backoff.
//
// Events: "open" (after every (re)connect, so the caller re-subscribes), "frame" (each server
// frame), "status" (connected: boolean), "ended" (the session is over: sign in again).
const PING_EVERY = 20000; // ms; a missing pong after this long means the link is dead
const BACKOFF = [500, 1000, 2000, 4000, 8000, 15000];

export class ChatSocket extends EventTarget {
  constructor(url) {
    super();
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    this.url = `${scheme}//${window.location.host}${url}`;
    this.ws = null;
    this.attempt = 0;
    this.connected = false;
    this.ended = false;
    this.lastSeen = 0;
    this.pingTimer = null;
    this.retryTimer = null;
    window.addEventListener("online", () => this.reconnectNow());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible" && !this.connected) this.reconnectNow();
    });
  }

  connect() {
    if (this.ended) return;
    clearTimeout(this.retryTimer);
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.addEventListener("open", () => {
      if (this.ws !== ws) return;
      this.attempt = 0;
      this.connected = true;
      this.lastSeen = Date.now();
      this.startPing();
      this.emit("status", { connected: true });
      this.emit("open", {});
    });
    ws.addEventListener("message", (event) => {
      if (this.ws !== ws) return;
      this.lastSeen = Date.now();
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (!frame || typeof frame.type !== "string") return;
      if (frame.type === "error" && frame.code === "session_ended") {
        this.end();
        return;
      }
      if (frame.type !== "pong") this.emit("frame", frame);
    });
    ws.addEventListener("close", (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.connected = false;
      this.stopPing();
      if (event.code === 4401) {
        this.end();
        return;
      }
      this.emit("status", { connected: false });
      this.scheduleReconnect();
    });
  }

  scheduleReconnect() {
    if (this.ended) return;
    const base = BACKOFF[Math.min(this.attempt, BACKOFF.length - 1)];
    this.attempt += 1;
    // Jitter, so a restarted server is not hit by every tab at the same instant.
    const delay = base / 2 + Math.random() * base;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  reconnectNow() {
    if (this.connected || this.ended) return;
    this.attempt = 0;
    if (this.ws) return; // a connection attempt is already under way
    this.connect();
  }

  startPing() {
    this.stopPing();
    this.pingTimer = setInterval(() => {
      if (!this.ws) return;
      if (Date.now() - this.lastSeen > PING_EVERY * 2) {
        // Nothing heard for two intervals: the connection is dead even if the OS has not noticed.
        this.ws.close();
        return;
      }
      this.send({ type: "ping" });
    }, PING_EVERY);
  }

  stopPing() {
    clearInterval(this.pingTimer);
    this.pingTimer = null;
  }

  send(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  end() {
    this.ended = true;
    this.connected = false;
    this.stopPing();
    if (this.ws) this.ws.close();
    this.ws = null;
    this.emit("ended", {});
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
