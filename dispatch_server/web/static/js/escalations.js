// Incidents on the wall (R5, R6): the open ones with an "Escalate" action for the command room, and
// the escalations received, shown prominently to the leaders and upper-court observers they went to.

import { api } from "./api.js";
import { el, errorText, formatDuration, formatTime, showMessage } from "./ui.js";

/** Who may escalate (docs/api.md, POST /api/incidents/{id}/escalations). */
export const ESCALATE_ROLES = new Set(["commander", "leader", "duty_officer", "admin"]);

export const TARGET_LABELS = {
  leader_on_duty: "Leader on duty 值班领导",
  upper_court: "Upper court 上级法院",
};

const KIND_LABELS = {
  routine: "Routine 一般",
  major: "Major 重大",
  sensitive: "Sensitive 敏感",
  group: "Group 群体性",
  emergency: "Emergency 突发",
};

function personName(person) {
  return person ? person.display_name || person.username || `#${person.id}` : "?";
}

/** The open incidents, each with an inline escalation form for those who may escalate. */
export class IncidentPanel {
  /** `list`, `empty` and `count` are the panel's elements; `user` the signed-in person. */
  constructor({ list, empty, count, user, focusId = null }) {
    this.list = list;
    this.empty = empty;
    this.count = count;
    this.user = user;
    this.focusId = focusId; // ?incident=N: the incident a link in a package points at
    this.incidents = new Map(); // id -> incident
    this.escalated = new Map(); // id -> the last escalation made from this page
    this.openFormId = null;
  }

  get canEscalate() {
    return ESCALATE_ROLES.has(this.user.role);
  }

  async load() {
    const page = await api("/api/incidents?status=open&limit=50");
    this.incidents.clear();
    for (const incident of page.items) this.incidents.set(incident.id, incident);
    this.render();
  }

  clear() {
    this.incidents.clear();
    this.escalated.clear();
    this.render();
  }

  /** An escalation of one of the incidents, made here or elsewhere: shown on it. */
  noteEscalated(escalation) {
    const known = this.escalated.get(escalation.incident_id);
    if (known && known.id >= escalation.id) return;
    this.escalated.set(escalation.incident_id, escalation);
    if (this.incidents.has(escalation.incident_id)) this.render();
  }

  render() {
    const sorted = [...this.incidents.values()].sort((a, b) => b.id - a.id);
    this.list.replaceChildren(...sorted.map((incident) => this.renderIncident(incident)));
    this.empty.hidden = sorted.length > 0;
    this.count.textContent = String(sorted.length);
    const focused = this.list.querySelector(".incident.is-focused");
    focused?.scrollIntoView({ block: "nearest" });
  }

  renderIncident(incident) {
    const escalated = this.escalated.get(incident.id);
    const button = this.canEscalate
      ? el("button", { type: "button", class: "btn btn-small escalate-toggle", "aria-expanded": "false" }, "Escalate 上报")
      : null;
    const item = el(
      "li",
      {
        class: `incident incident-${incident.kind}`,
        dataset: { incidentId: incident.id, kind: incident.kind },
      },
      el(
        "div",
        { class: "incident-meta" },
        el("span", { class: "incident-kind" }, KIND_LABELS[incident.kind] || incident.kind),
        incident.case_number ? el("span", { class: "incident-case" }, incident.case_number) : null,
        el("time", { class: "incident-time", datetime: incident.opened_at }, formatTime(incident.opened_at)),
      ),
      el("p", { class: "incident-title" }, incident.title),
      el(
        "p",
        { class: "incident-detail" },
        [incident.place, `${incident.officers.length} officer(s) 名执法人员`, incident.commander ? `cmd ${personName(incident.commander)}` : ""]
          .filter(Boolean)
          .join(" · "),
      ),
      escalated
        ? el(
          "p",
          { class: "incident-escalated", role: "status" },
          `↑ Escalated to ${TARGET_LABELS[escalated.target]} (${escalated.recipients.map((r) => personName(r.person)).join(", ")}) ${formatTime(escalated.requested_at)}`,
        )
        : null,
      button ? el("div", { class: "incident-actions" }, button) : null,
    );
    if (incident.id === this.focusId) item.classList.add("is-focused");
    if (button) {
      const form = this.renderForm(incident, button);
      item.append(form);
      button.addEventListener("click", () => this.toggleForm(incident.id, form, button));
      if (this.openFormId === incident.id) this.showForm(form, button, true);
    }
    return item;
  }

  renderForm(incident, button) {
    const id = `escalate-${incident.id}`;
    const target = el(
      "select",
      { id: `${id}-target`, name: "target", class: "escalate-target" },
      Object.entries(TARGET_LABELS).map(([value, label]) => el("option", { value }, label)),
    );
    const reason = el("textarea", {
      id: `${id}-reason`,
      name: "reason",
      class: "escalate-reason",
      rows: 2,
      maxlength: 2000,
      required: true,
      placeholder: "Why — e.g. the crowd is growing 上报原因",
    });
    const send = el("button", { type: "submit", class: "btn btn-small btn-danger" }, "Send escalation 发送上报");
    const cancel = el("button", { type: "button", class: "btn btn-small btn-quiet" }, "Cancel 取消");
    const form = el(
      "form",
      { class: "escalate-form", hidden: true, novalidate: true, "aria-label": `Escalate ${incident.title}` },
      el("label", { for: target.id }, "To 上报至"),
      target,
      el("label", { for: reason.id }, "Reason 原因"),
      reason,
      el("div", { class: "escalate-buttons" }, send, cancel),
    );
    cancel.addEventListener("click", () => this.showForm(form, button, false));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.escalate(incident, target.value, reason.value.trim(), [send, cancel]);
    });
    return form;
  }

  toggleForm(incidentId, form, button) {
    this.showForm(form, button, form.hidden);
    if (!form.hidden) form.querySelector("textarea").focus();
  }

  showForm(form, button, visible) {
    form.hidden = !visible;
    button.setAttribute("aria-expanded", String(visible));
    this.openFormId = visible ? Number(form.closest(".incident").dataset.incidentId) : null;
  }

  async escalate(incident, target, reason, buttons) {
    if (!reason) return showMessage("Give a reason for the escalation. 请填写上报原因");
    for (const button of buttons) button.disabled = true;
    try {
      const escalation = await api(`/api/incidents/${incident.id}/escalations`, {
        method: "POST",
        body: { target, reason },
      });
      this.openFormId = null;
      this.noteEscalated(escalation);
      this.render();
      showMessage(`Escalated “${incident.title}” to ${TARGET_LABELS[target]}. 已上报`, "info");
    } catch (error) {
      showMessage(`Not escalated: ${errorText(error)}`);
      for (const button of buttons) button.disabled = false;
    }
  }
}

/** The escalations sent to the signed-in person that it has not acknowledged yet, most recent first. */
export class EscalationPanel {
  /** `panel` is shown only while something waits; `list` and `count` are inside it. */
  constructor({ panel, list, count, user }) {
    this.panel = panel;
    this.list = list;
    this.count = count;
    this.user = user;
    this.escalations = new Map(); // id -> escalation waiting for my acknowledgement
  }

  isForMe(escalation) {
    return escalation.recipients.some((r) => r.person.id === this.user.id && !r.acknowledged_at);
  }

  async load() {
    const page = await api("/api/escalations/received?pending=true&limit=50");
    this.escalations.clear();
    for (const escalation of page.items) this.escalations.set(escalation.id, escalation);
    this.render();
  }

  clear() {
    this.escalations.clear();
    this.render();
  }

  /** An escalation as an event or a response brought it: shown while it waits for me. Returns
   * whether it is new and mine. */
  upsert(escalation) {
    const known = this.escalations.has(escalation.id);
    if (this.isForMe(escalation)) this.escalations.set(escalation.id, escalation);
    else this.escalations.delete(escalation.id);
    this.render();
    return !known && this.escalations.has(escalation.id);
  }

  render() {
    const sorted = [...this.escalations.values()].sort((a, b) => b.id - a.id);
    this.list.replaceChildren(...sorted.map((escalation) => this.renderEscalation(escalation)));
    this.count.textContent = String(sorted.length);
    this.panel.hidden = sorted.length === 0;
  }

  renderEscalation(escalation) {
    const pkg = escalation.package;
    const incident = pkg.incident || {};
    const overdue = pkg.directives.reduce((n, d) => n + d.targets.filter((t) => t.overdue).length, 0);
    const acknowledge = el("button", { type: "button", class: "btn btn-small btn-primary" }, "Acknowledge 已收到");
    acknowledge.addEventListener("click", () => this.acknowledge(escalation, acknowledge));
    return el(
      "li",
      { class: "escalation", dataset: { escalationId: escalation.id, incidentId: escalation.incident_id } },
      el(
        "div",
        { class: "escalation-meta" },
        el("span", { class: "escalation-target" }, `↑ ${TARGET_LABELS[escalation.target]}`),
        el("span", {}, `from ${personName(escalation.requested_by)}`),
        el("time", { class: "escalation-time", datetime: escalation.requested_at }, formatTime(escalation.requested_at)),
      ),
      el(
        "p",
        { class: "escalation-title" },
        `${KIND_LABELS[incident.kind] || incident.kind || ""} · ${incident.title || `incident ${escalation.incident_id}`}`,
      ),
      el("p", { class: "escalation-reason" }, escalation.reason),
      el(
        "p",
        { class: "escalation-facts" },
        [
          incident.place,
          incident.case_number,
          `open ${formatDuration(incident.open_seconds || 0)}`,
          `${pkg.live.length} live 直播`,
          `${pkg.directives.length} open directive(s) 未完成指令${overdue ? `, ${overdue} overdue 超时` : ""}`,
          `${pkg.alerts.length} recent alert(s) 告警`,
        ]
          .filter(Boolean)
          .join(" · "),
      ),
      pkg.live.length
        ? el(
          "ul",
          { class: "escalation-live" },
          pkg.live.map((link) => el("li", {}, el("a", { href: link.wall_url }, `▶ ${personName(link.officer)} (${link.device})`))),
        )
        : null,
      el("div", { class: "escalation-actions" }, acknowledge),
    );
  }

  async acknowledge(escalation, button) {
    button.disabled = true;
    try {
      this.upsert(
        await api(`/api/incidents/${escalation.incident_id}/escalations/${escalation.id}/ack`, { method: "POST" }),
      );
    } catch (error) {
      showMessage(`Not acknowledged: ${errorText(error)}`);
      button.disabled = false;
    }
  }
}
