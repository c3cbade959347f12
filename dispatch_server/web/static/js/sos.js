// The officer's SOS (R9): one press sends a critical alert to the command room, with the phone's
// position when it can be had quickly; the card then shows whether it was seen and resolved.

import { api } from "./api.js";
import { errorText, formatTime } from "./ui.js";

/** Wait at most this long for a position before sending without one. */
const POSITION_TIMEOUT_MS = 3000;

/** The phone's position, or null (no permission, no fix in time, no geolocation at all). */
export function currentPosition(timeoutMs = POSITION_TIMEOUT_MS) {
  if (!navigator.geolocation) return Promise.resolve(null);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), timeoutMs + 500);
    navigator.geolocation.getCurrentPosition(
      ({ coords }) => {
        clearTimeout(timer);
        resolve({ latitude: coords.latitude, longitude: coords.longitude, accuracy_m: coords.accuracy });
      },
      () => {
        clearTimeout(timer);
        resolve(null);
      },
      { enableHighAccuracy: true, timeout: timeoutMs, maximumAge: 30000 },
    );
  });
}

/** What the card says about an SOS as the server last reported it. */
export function describeSos(alert) {
  if (alert.resolved_at) {
    return `Resolved ${formatTime(alert.resolved_at)} 已解除${alert.resolved_note ? `: ${alert.resolved_note}` : ""}`;
  }
  if (alert.acknowledged_at) {
    const who = alert.acknowledged_by ? alert.acknowledged_by.display_name || alert.acknowledged_by.username : "";
    const note = alert.acknowledged_note ? `: ${alert.acknowledged_note}` : "";
    return `Seen by ${who} ${formatTime(alert.acknowledged_at)} 指挥中心已确认${note}`;
  }
  return `SOS sent ${formatTime(alert.raised_at)}: waiting for the command room 已发送，等待确认`;
}

export class SosButton {
  /** ``knownPosition()`` gives a recent position at once, or null: then the phone is asked. */
  constructor({ button, state, knownPosition = () => null }) {
    this.button = button;
    this.state = state;
    this.knownPosition = knownPosition;
    this.alertId = null;
    button.addEventListener("click", () => this.press());
  }

  async press() {
    this.button.disabled = true;
    this.show("Sending SOS… 正在发送", "sending");
    try {
      const position = this.knownPosition() ?? (await currentPosition());
      const alert = await api("/api/alerts/sos", { method: "POST", body: position ? { position } : {} });
      this.update(alert);
    } catch (error) {
      this.show(`SOS not sent: ${errorText(error)} — press again 发送失败，请重试`, "failed");
    } finally {
      this.button.disabled = false;
    }
  }

  /** An alert from a response or the websocket; only this officer's SOS concerns the card. */
  update(alert) {
    if (alert.kind !== "sos") return;
    if (this.alertId !== null && alert.id < this.alertId) return; // an older one
    this.alertId = alert.id;
    this.show(describeSos(alert), alert.resolved_at ? "resolved" : alert.acknowledged_at ? "seen" : "sent");
  }

  clear() {
    this.alertId = null;
    this.state.hidden = true;
    this.state.textContent = "";
  }

  show(text, status) {
    this.state.textContent = text;
    this.state.dataset.status = status;
    this.state.hidden = false;
  }
}
