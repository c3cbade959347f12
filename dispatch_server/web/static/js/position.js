// The officer's position for the command room (R9): while signed in, the phone's position is
// watched and reported at most every REPORT_EVERY_MS (sooner after a move of MOVE_METRES), over the
// websocket when it is open, else by POST. The page says whether it is being shared.

import { api } from "./api.js";
import { errorText } from "./ui.js";

export const REPORT_EVERY_MS = 10000;
const MOVE_METRES = 25;
/** Fixes vaguer than this (a guess from the network, not a position) are not reported. */
const MAX_ACCURACY_M = 1000;
const METRES_PER_DEGREE = 111320;

/** One fix as the dispatch server takes it (``position`` message, POST /api/positions). */
export function positionReport(position) {
  const { coords } = position;
  const report = {
    latitude: coords.latitude,
    longitude: coords.longitude,
    accuracy_m: coords.accuracy,
    at: new Date(position.timestamp).toISOString(),
  };
  if (Number.isFinite(coords.heading) && coords.heading >= 0 && coords.heading < 360) {
    report.heading_deg = coords.heading;
  }
  if (Number.isFinite(coords.speed) && coords.speed >= 0) report.speed_mps = coords.speed;
  return report;
}

function metresBetween(a, b) {
  const north = (a.latitude - b.latitude) * METRES_PER_DEGREE;
  const east = (a.longitude - b.longitude) * METRES_PER_DEGREE * Math.cos((a.latitude * Math.PI) / 180);
  return Math.hypot(north, east);
}

export class PositionReporter {
  /** ``send(message)`` puts a message on the websocket (false when it is not open); ``state`` is
   * the element that tells the officer what is shared. */
  constructor({ send, state }) {
    this.send = send;
    this.state = state;
    this.watchId = null;
    this.latest = null; // the newest report, sent or not
    this.sent = null; // the last report that went out
    this.sentAt = 0;
  }

  start() {
    if (this.watchId !== null) return;
    if (!navigator.geolocation) {
      this.show("This device gives no position 本机无法定位", "off");
      return;
    }
    this.show("Finding your position… 正在定位", "waiting");
    this.watchId = navigator.geolocation.watchPosition(
      (position) => this.onFix(position),
      (error) => this.onError(error),
      { enableHighAccuracy: true, maximumAge: 5000, timeout: 30000 },
    );
  }

  stop() {
    if (this.watchId !== null) navigator.geolocation.clearWatch(this.watchId);
    this.watchId = null;
    this.latest = null;
    this.sent = null;
    this.sentAt = 0;
    this.state.hidden = true;
  }

  /** The newest fix if it is at most ``maxAgeMs`` old, for an SOS; else null. */
  recent(maxAgeMs = 30000) {
    if (!this.latest || Date.now() - Date.parse(this.latest.at) > maxAgeMs) return null;
    const { latitude, longitude, accuracy_m } = this.latest;
    return { latitude, longitude, accuracy_m };
  }

  onFix(position) {
    const report = positionReport(position);
    if (!(report.accuracy_m <= MAX_ACCURACY_M)) {
      this.show(`Position too vague to share (±${Math.round(report.accuracy_m)} m) 定位精度不足`, "waiting");
      return;
    }
    this.latest = report;
    const due = Date.now() - this.sentAt >= REPORT_EVERY_MS;
    const moved = this.sent !== null && metresBetween(report, this.sent) >= MOVE_METRES;
    if (this.sent === null || due || moved) this.report(report);
  }

  async report(report) {
    this.sent = report;
    this.sentAt = Date.now();
    if (!this.send({ type: "position", ...report })) {
      try {
        await api("/api/positions", { method: "POST", body: report });
      } catch (error) {
        this.show(`Position not sent: ${errorText(error)} 位置发送失败`, "failed");
        return;
      }
    }
    this.show(`Position shared with the command room (±${Math.round(report.accuracy_m)} m) 位置已共享`, "shared");
  }

  onError(error) {
    const denied = error.code === error.PERMISSION_DENIED;
    this.show(
      denied
        ? "Position not shared: location is blocked for this page 未授权定位"
        : "No position yet: looking again 暂无定位，继续尝试",
      denied ? "off" : "waiting",
    );
  }

  show(text, status) {
    this.state.textContent = text;
    this.state.dataset.status = status;
    this.state.hidden = false;
  }
}
