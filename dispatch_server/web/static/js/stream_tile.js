// One live stream on the video wall: its tile element and the WHEP viewer that feeds it.

import { api } from "./api.js";
import { view } from "./rtc.js";
import { el, errorText, formatTime, retryDelay } from "./ui.js";


/** Tile states, shown in `data-state` on the tile and styled by the stylesheet. */
export const TileState = Object.freeze({
  CONNECTING: "connecting",
  PLAYING: "playing",
  INTERRUPTED: "interrupted",
  ERROR: "error",
});

/** Errors that retrying will not fix (the user lacks the right, or the session is gone). */
function isPermanent(error) {
  return error && (error.status === 401 || error.status === 403);
}

const HEALTH_LABELS = {
  frozen: "FROZEN 画面冻结",
  black: "BLACK 黑屏",
  covered: "COVERED 遮挡",
  no_video: "NO VIDEO 无画面",
};

export class StreamTile {
  /**
   * @param stream  `{stream_id, officer, started_at, whep_url}` from the API, and `grant_path` when
   *                the grant comes from elsewhere than /api/grants/view
   * @param hooks   { onError(tile, message), onListen(tile) }
   */
  constructor(stream, hooks) {
    this.stream = stream;
    this.hooks = hooks;
    this.viewer = null;
    this.generation = 0; // bumps on every connect() so a stale attempt can tell it lost
    this.failures = 0;
    this.retryTimer = null;
    this.closed = false;
    this.element = this.build();
  }

  get id() {
    return this.stream.stream_id;
  }

  get name() {
    const officer = this.stream.officer || {};
    return officer.display_name || officer.username || this.id;
  }

  build() {
    this.video = el("video", { muted: true, autoplay: true, playsinline: true });
    this.video.muted = true;
    this.statusText = el("span", { class: "tile-status-text" });
    this.retryButton = el("button", { type: "button", class: "btn btn-small tile-retry", hidden: true }, "Retry 重试");
    this.audioButton = el("button", { type: "button", class: "btn btn-small tile-audio", "aria-pressed": "false" }, "Listen 监听");
    this.nameNode = el("span", { class: "tile-name" }, this.name);
    this.healthNode = el("span", { class: "badge badge-health", hidden: true, role: "status" });
    this.sinceNode = el("span", { class: "tile-since" });
    this.positionNode = el("span", { class: "tile-position", hidden: true });
    this.position = null;

    const tile = el(
      "article",
      { class: "tile", dataset: { streamId: this.id, state: TileState.CONNECTING } },
      this.video,
      el("div", { class: "tile-overlay" }, el("span", { class: "spinner", "aria-hidden": "true" }), this.statusText, this.retryButton),
      el(
        "div",
        { class: "tile-bar" },
        el("span", { class: "badge badge-live" }, "LIVE"),
        this.healthNode,
        this.nameNode,
        this.sinceNode,
        this.positionNode,
        this.audioButton,
      ),
    );
    this.element = tile;
    this.update(this.stream);

    this.retryButton.addEventListener("click", () => this.connect());
    this.audioButton.addEventListener("click", () => this.hooks.onListen(this));
    this.video.addEventListener("dblclick", () => {
      if (document.fullscreenElement) document.exitFullscreen();
      else tile.requestFullscreen?.().catch(() => {});
    });
    return tile;
  }

  /** Refresh the label from a newer copy of the stream record. */
  update(stream) {
    this.stream = { ...this.stream, ...stream };
    this.nameNode.textContent = this.name;
    this.element?.setAttribute("aria-label", `${this.name} live`);
    const since = formatTime(this.stream.started_at);
    this.sinceNode.textContent = since ? `since ${since}` : "";
    this.setHealth(this.stream.health || []);
  }

  get officerId() {
    return this.stream.officer?.id;
  }

  /**
   * The officer's last known position (R9), `{latitude, longitude, accuracy_m, at}`, shown as
   * "31.2304, 121.4737 · 12 s ago"; call again (with no argument) to age it.
   */
  setPosition(position = this.position) {
    this.position = position;
    this.positionNode.hidden = !position;
    if (!position) return;
    const ago = Math.max(0, Math.round((Date.now() - Date.parse(position.at)) / 1000));
    const age = ago < 120 ? `${ago} s ago` : ago < 7200 ? `${Math.round(ago / 60)} min ago` : formatTime(position.at);
    this.positionNode.textContent = `${position.latitude.toFixed(4)}, ${position.longitude.toFixed(4)} · ${age}`;
    this.positionNode.title = `±${Math.round(position.accuracy_m)} m at ${formatTime(position.at)}`;
    this.positionNode.dataset.latitude = String(position.latitude);
    this.positionNode.dataset.longitude = String(position.longitude);
  }

  /** Show the relay's video health flags (R8): frozen, black, covered, no_video. */
  setHealth(flags) {
    this.stream.health = flags;
    this.element.dataset.health = flags.join(" ");
    this.element.classList.toggle("is-unhealthy", flags.length > 0);
    this.healthNode.hidden = flags.length === 0;
    this.healthNode.textContent = flags.map((flag) => HEALTH_LABELS[flag] || flag).join(" · ");
  }

  setState(state, text = "") {
    this.element.dataset.state = state;
    this.statusText.textContent = text;
    this.retryButton.hidden = state !== TileState.ERROR;
  }

  setListening(listening) {
    this.video.muted = !listening;
    if (listening) this.video.play().catch(() => {});
    this.audioButton.setAttribute("aria-pressed", String(listening));
    this.audioButton.textContent = listening ? "Mute 静音" : "Listen 监听";
    this.element.classList.toggle("is-listening", listening);
  }

  /** Get a view grant and start (or restart) the WHEP viewer. */
  async connect() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const generation = ++this.generation;
    const previous = this.viewer;
    this.viewer = null;
    previous?.stop();
    this.setState(TileState.CONNECTING, "Connecting… 连接中");

    try {
      // An incident's own grant for an upper-court observer (R6); the command room's otherwise.
      const grantPath = this.stream.grant_path || "/api/grants/view";
      const answer = await api(grantPath, { method: "POST", body: { stream_ids: [this.id] } });
      const entry = (answer.streams || []).find((item) => item.stream_id === this.id);
      const whepUrl = (entry && entry.whep_url) || this.stream.whep_url;
      if (!whepUrl) throw new Error("the server gave no WHEP URL for this stream");
      const viewer = await view(this.video, whepUrl, answer.grant);
      if (this.closed || generation !== this.generation) {
        viewer.stop();
        return;
      }
      this.viewer = viewer;
      viewer.pc.addEventListener("connectionstatechange", () => this.onConnectionState(viewer));
      this.onConnectionState(viewer);
    } catch (error) {
      if (this.closed || generation !== this.generation) return;
      this.fail(errorText(error), !isPermanent(error));
    }
  }

  onConnectionState(viewer) {
    if (viewer !== this.viewer || this.closed) return;
    switch (viewer.pc.connectionState) {
      case "connected":
        this.failures = 0;
        this.setState(TileState.PLAYING);
        break;
      case "disconnected":
        this.setState(TileState.INTERRUPTED, "Signal interrupted… 信号中断");
        break;
      case "failed":
        this.fail("connection to the relay failed", true);
        break;
      case "new":
      case "connecting":
        this.setState(TileState.CONNECTING, "Connecting… 连接中");
        break;
      default:
        break;
    }
  }

  fail(message, retry) {
    this.failures += 1;
    const viewer = this.viewer;
    this.viewer = null;
    viewer?.stop();
    if (this.failures === 1) this.hooks.onError(this, message);
    if (!retry) {
      this.setState(TileState.ERROR, message);
      return;
    }
    const delay = retryDelay(this.failures);
    this.setState(TileState.ERROR, `${message} — retrying in ${Math.round(delay / 1000)} s`);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  /**
   * Stop the viewer and remove the tile. The relay session is DELETEd unless `streamEnded`
   * says the relay has already ended it along with the stream.
   */
  close({ streamEnded = false } = {}) {
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const viewer = this.viewer;
    this.viewer = null;
    viewer?.stop({ sessionEnded: streamEnded });
    this.video.srcObject = null;
    this.element.remove();
  }
}
