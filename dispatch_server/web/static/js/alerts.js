// The command room's open alerts (R8, R9, R4, R10, R2): a panel with acknowledge and resolve.

import { api } from "./api.js";
import { el, errorText, formatTime, showMessage } from "./ui.js";

/** What each alert kind is called on the wall. */
export const KIND_LABELS = {
  sos: "SOS 求救",
  stream_lost: "Stream lost 画面中断",
  stream_frozen: "Picture frozen 画面冻结",
  stream_black: "Picture black 黑屏",
  stream_covered: "Camera covered 镜头遮挡",
  field_op_no_stream: "Not streaming 未直播",
  ack_overdue: "Not acknowledged 未按时确认",
  empty_seat: "Empty seat 空岗",
  storage: "Storage 存储",
};

const LEVEL_ORDER = { critical: 0, warning: 1, info: 2 };

/** Critical first, then the newest. */
export function alertOrder(a, b) {
  return (LEVEL_ORDER[a.level] ?? 3) - (LEVEL_ORDER[b.level] ?? 3) || b.id - a.id;
}

export class AlertPanel {
  /** `list`, `empty` and `count` are the panel's elements. */
  constructor({ list, empty, count }) {
    this.list = list;
    this.empty = empty;
    this.count = count;
    this.alerts = new Map(); // id -> open alert
    this.changedId = null;
  }

  /** Show the open alerts as the server lists them now. */
  async load() {
    const page = await api("/api/alerts?state=open&limit=200");
    this.alerts.clear();
    for (const alert of page.items) this.alerts.set(alert.id, alert);
    this.render();
  }

  clear() {
    this.alerts.clear();
    this.render();
  }

  /** An alert as an event or a response brought it: shown while open, gone once resolved. */
  upsert(alert) {
    if (alert.resolved_at) this.alerts.delete(alert.id);
    else this.alerts.set(alert.id, alert);
    this.changedId = alert.id;
    this.render();
  }

  render() {
    const sorted = [...this.alerts.values()].sort(alertOrder);
    this.list.replaceChildren(...sorted.map((alert) => this.renderAlert(alert)));
    this.empty.hidden = sorted.length > 0;
    this.count.textContent = String(sorted.length);
    this.count.dataset.level = sorted.length ? sorted[0].level : "";
    this.changedId = null;
  }

  renderAlert(alert) {
    const note = el("input", {
      class: "alert-note-input",
      type: "text",
      maxlength: 2000,
      placeholder: "Note 备注",
      "aria-label": "Note for this alert",
    });
    const acknowledge = alert.acknowledged_at
      ? null
      : el("button", { type: "button", class: "btn btn-small" }, "Acknowledge 确认");
    const resolve = el("button", { type: "button", class: "btn btn-small btn-primary" }, "Resolve 解除");
    acknowledge?.addEventListener("click", () => this.act(alert, "acknowledge", note, [acknowledge, resolve]));
    resolve.addEventListener("click", () => this.act(alert, "resolve", note, [acknowledge, resolve]));
    const who = alert.acknowledged_by;
    const item = el(
      "li",
      { class: `alert alert-${alert.level}`, dataset: { alertId: alert.id, kind: alert.kind } },
      el(
        "div",
        { class: "alert-meta" },
        el("span", { class: `state state-${alert.level}` }, alert.level),
        el("span", { class: "alert-kind" }, KIND_LABELS[alert.kind] || alert.kind),
        el("time", { class: "alert-time", datetime: alert.raised_at }, formatTime(alert.raised_at)),
      ),
      el("p", { class: "alert-text" }, alert.message),
      alert.acknowledged_at
        ? el(
          "p",
          { class: "alert-ack" },
          `✓ ${who ? who.display_name || who.username : "?"} ${formatTime(alert.acknowledged_at)}`,
          alert.acknowledged_note ? `: ${alert.acknowledged_note}` : "",
        )
        : null,
      el("div", { class: "alert-actions" }, note, acknowledge, resolve),
    );
    if (alert.id === this.changedId) item.classList.add("is-changed");
    return item;
  }

  async act(alert, action, note, buttons) {
    for (const button of buttons) if (button) button.disabled = true;
    try {
      const changed = await api(`/api/alerts/${alert.id}/${action}`, {
        method: "POST",
        body: { note: note.value.trim() },
      });
      this.upsert(changed);
    } catch (error) {
      showMessage(`Alert not ${action === "resolve" ? "resolved" : "acknowledged"}: ${errorText(error)}`);
      for (const button of buttons) if (button) button.disabled = false;
    }
  }
}
