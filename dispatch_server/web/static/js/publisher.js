// The officer's camera: capture, publish grant, WHIP session, and retries while wanted.

import { api } from "./api.js";
import { publish } from "./rtc.js";
import { errorText, retryDelay } from "./ui.js";


/** What #stream-state shows; `error` is followed by the reason. */
export const StreamState = Object.freeze({
  IDLE: "idle",
  CONNECTING: "connecting",
  LIVE: "live",
  ERROR: "error",
});

const MEDIA_CONSTRAINTS = {
  video: { facingMode: "environment", width: { ideal: 1280 }, height: { ideal: 720 } },
  audio: true,
};

/** A getUserMedia failure in words an officer can act on. */
function cameraErrorText(error) {
  switch (error && error.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "camera or microphone permission denied 未授权摄像头/麦克风";
    case "NotFoundError":
    case "OverconstrainedError":
      return "no camera or microphone found 未找到摄像头/麦克风";
    case "NotReadableError":
      return "the camera is in use by another app 摄像头被占用";
    default:
      return errorText(error);
  }
}

/** Errors worth retrying: network trouble and server-side failures, not refusals. */
function isTransient(error) {
  const status = error && typeof error.status === "number" ? error.status : 0;
  return status === 0 || status >= 500;
}

export class Publisher {
  /**
   * @param preview        the local <video> preview element
   * @param onStateChange  (state, detail) => void
   */
  constructor(preview, onStateChange) {
    this.preview = preview;
    this.onStateChange = onStateChange;
    this.state = StreamState.IDLE;
    this.media = null;
    this.session = null;
    this.wanted = false;
    this.generation = 0;
    this.failures = 0;
    this.retryTimer = null;
    this.wakeLock = null;
    this.onVisibility = () => {
      if (this.wanted && document.visibilityState === "visible") this.holdWakeLock();
    };
  }

  setState(state, detail = "") {
    this.state = state;
    this.onStateChange(state, detail);
  }

  /** Open the camera and publish until stop(); transient failures are retried with backoff. */
  async start() {
    if (this.wanted) return;
    this.wanted = true;
    this.failures = 0;
    const generation = ++this.generation;
    this.setState(StreamState.CONNECTING);

    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      this.giveUp("camera unavailable: this page must be opened over HTTPS 需使用 HTTPS 访问");
      return;
    }
    try {
      const media = await navigator.mediaDevices.getUserMedia(MEDIA_CONSTRAINTS);
      if (generation !== this.generation) {
        media.getTracks().forEach((track) => track.stop());
        return;
      }
      this.media = media;
      this.preview.srcObject = media;
      this.preview.play().catch(() => {});
    } catch (error) {
      if (generation === this.generation) this.giveUp(cameraErrorText(error));
      return;
    }
    this.holdWakeLock();
    document.addEventListener("visibilitychange", this.onVisibility);
    await this.connect();
  }

  async connect() {
    this.retryTimer = null;
    const generation = ++this.generation;
    const previous = this.session;
    this.session = null;
    previous?.stop();
    this.setState(StreamState.CONNECTING);
    try {
      const grant = await api("/api/grants/publish", { method: "POST", body: { device: "phone" } });
      const session = await publish(this.media, grant.whip_url, grant.grant, { iceServers: grant.ice_servers || [] });
      if (generation !== this.generation) {
        session.stop();
        return;
      }
      this.session = session;
      session.pc.addEventListener("connectionstatechange", () => this.onConnectionState(session));
      this.onConnectionState(session);
    } catch (error) {
      if (generation !== this.generation) return;
      if (isTransient(error)) this.retry(errorText(error));
      else this.giveUp(errorText(error));
    }
  }

  onConnectionState(session) {
    if (session !== this.session) return;
    switch (session.pc.connectionState) {
      case "connected":
        this.failures = 0;
        this.setState(StreamState.LIVE);
        break;
      case "new":
      case "connecting":
      case "disconnected": // ICE may recover by itself; "failed" follows if it does not
        this.setState(StreamState.CONNECTING);
        break;
      case "failed":
        this.retry("connection to the relay failed");
        break;
      default:
        break;
    }
  }

  retry(reason) {
    this.failures += 1;
    const session = this.session;
    this.session = null;
    session?.stop();
    const delay = retryDelay(this.failures);
    this.setState(StreamState.ERROR, `${reason} — retrying in ${Math.round(delay / 1000)} s`);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  /** A failure retrying cannot fix: release everything and show the reason. */
  giveUp(reason) {
    this.release();
    this.setState(StreamState.ERROR, reason);
  }

  /** Stop publishing (DELETE the WHIP session) and release the camera. */
  stop() {
    this.release();
    this.setState(StreamState.IDLE);
  }

  release() {
    this.wanted = false;
    this.generation += 1;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const session = this.session;
    this.session = null;
    session?.stop();
    this.media?.getTracks().forEach((track) => track.stop());
    this.media = null;
    this.preview.srcObject = null;
    document.removeEventListener("visibilitychange", this.onVisibility);
    this.wakeLock?.release().catch(() => {});
    this.wakeLock = null;
  }

  /** Keep the phone's screen on while streaming, where the browser allows it. */
  async holdWakeLock() {
    if (!("wakeLock" in navigator) || (this.wakeLock && !this.wakeLock.released)) return;
    try {
      this.wakeLock = await navigator.wakeLock.request("screen");
    } catch {
      this.wakeLock = null; // not fatal: the stream works without it
    }
  }
}
