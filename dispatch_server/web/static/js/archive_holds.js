// The archive page's retention panel (R2): how long the recording in the player is kept, the evidence
// holds that keep it longer, and, for commanders, leaders and administrators, placing and lifting a
// hold (each with its reason). Contract: docs/api.md (Retention and evidence holds).

import { api } from "./api.js";
import { el, errorText, showMessage } from "./ui.js";

/** Roles that may place and lift holds (docs/api.md, POST /api/holds). */
const HOLD_ROLES = new Set(["commander", "leader", "admin"]);

const $ = (id) => document.getElementById(id);

const panel = { streamId: null, user: null };

function formatDate(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  return date.toLocaleString([], {
    year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false,
  });
}

function holdObject(hold) {
  return hold.incident_id !== null ? `incident 案件 #${hold.incident_id}` : "this stream 本录像";
}

function holdItem(hold) {
  const item = el(
    "li",
    { class: "hold", dataset: { holdId: hold.id } },
    el(
      "span",
      { class: "hold-text" },
      `Hold 保全 #${hold.id} on ${holdObject(hold)} · ${hold.placed_by.display_name} · ` +
        `${formatDate(hold.placed_at)}: `,
      el("q", { class: "hold-reason" }, hold.reason),
    ),
  );
  if (HOLD_ROLES.has(panel.user?.role)) {
    const reason = el("input", {
      class: "hold-lift-reason",
      name: "reason",
      "aria-label": `Why lift hold #${hold.id} 解除理由`,
      placeholder: "Why lift it 解除理由",
      minlength: 3,
      maxlength: 2000,
      required: true,
    });
    const button = el("button", { type: "submit", class: "btn btn-quiet" }, "Lift 解除");
    const form = el("form", { class: "hold-lift" }, reason, button);
    form.addEventListener("submit", (event) => lift(event, hold.id, reason.value));
    item.append(form);
  }
  return item;
}

function render(retention) {
  const status = $("retention-status");
  if (retention.deleted_at) {
    status.textContent = `Deleted 已删除 ${formatDate(retention.deleted_at)}`;
  } else {
    const kept = `Kept until 保存至 ${formatDate(retention.kept_until)} (${retention.retention_days} days 天)`;
    status.textContent = retention.holds.length ? `${kept}, and while held 保全期间不得删除` : kept;
  }
  status.dataset.held = String(retention.holds.length > 0);
  $("hold-list").replaceChildren(...retention.holds.map(holdItem));
  $("hold-form").hidden = !HOLD_ROLES.has(panel.user?.role) || Boolean(retention.deleted_at);
}

async function refresh() {
  const streamId = panel.streamId;
  if (!streamId) return;
  try {
    const retention = await api(`/api/recordings/${encodeURIComponent(streamId)}/retention`);
    if (panel.streamId === streamId) render(retention);
  } catch (error) {
    $("retention-status").textContent = errorText(error);
  }
}

async function place(event) {
  event.preventDefault();
  const input = $("hold-reason");
  try {
    await api("/api/holds", { method: "POST", body: { stream_id: panel.streamId, reason: input.value } });
    input.value = "";
    await refresh();
  } catch (error) {
    showMessage(errorText(error));
  }
}

async function lift(event, holdId, reason) {
  event.preventDefault();
  try {
    await api(`/api/holds/${holdId}/lift`, { method: "POST", body: { reason } });
    await refresh();
  } catch (error) {
    showMessage(errorText(error));
  }
}

/** Show the retention of the recording now in the player. */
export function showRetention(streamId, user) {
  panel.streamId = streamId;
  panel.user = user;
  $("retention").hidden = false;
  $("retention-status").textContent = "…";
  $("hold-list").replaceChildren();
  $("hold-form").hidden = true;
  refresh();
}

export function clearRetention() {
  panel.streamId = null;
  panel.user = null;
  $("retention").hidden = true;
  $("hold-list").replaceChildren();
}

$("hold-form").addEventListener("submit", place);
