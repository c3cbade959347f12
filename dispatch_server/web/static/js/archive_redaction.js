// The archive page's redacted copy (issue 4): for those who may export, a copy of the recording in
// the player with the faces blurred, made in the background with its progress in percent, then a
// link to play or save it. Contract: docs/api.md (Redacted copies).

import { api } from "./api.js";
import { errorText, showMessage } from "./ui.js";

/** Roles that may ask for a redacted copy (docs/api.md, POST /api/redactions). */
const REDACT_ROLES = new Set(["commander", "leader", "admin"]);
const POLL_MS = 500;

const $ = (id) => document.getElementById(id);

const state = { streamId: null, timer: null, redactionId: null };

function stopFollowing() {
  clearTimeout(state.timer);
  state.timer = null;
  state.redactionId = null;
}

/** The recording in the player changed (or the page signed in): the button for who may use it. */
export function showRedaction(streamId, user) {
  stopFollowing();
  state.streamId = streamId;
  $("redact-progress").hidden = true;
  $("redact-download").hidden = true;
  $("redact-button").disabled = false;
  $("redact-button").hidden = !REDACT_ROLES.has(user?.role);
}

export function clearRedaction() {
  stopFollowing();
  state.streamId = null;
}

async function startRedaction() {
  const streamId = state.streamId;
  if (!streamId) return;
  stopFollowing();
  $("redact-button").disabled = true;
  $("redact-download").hidden = true;
  const progress = $("redact-progress");
  progress.hidden = false;
  progress.textContent = "0%";
  try {
    const job = await api("/api/redactions", { method: "POST", body: { stream_id: streamId } });
    state.redactionId = job.id;
    follow(job.id, streamId);
  } catch (error) {
    progress.hidden = true;
    $("redact-button").disabled = false;
    showMessage(errorText(error));
  }
}

async function follow(redactionId, streamId) {
  if (state.redactionId !== redactionId || state.streamId !== streamId) return;
  const progress = $("redact-progress");
  try {
    const job = await api(`/api/redactions/${redactionId}`);
    if (state.redactionId !== redactionId) return;
    progress.textContent = `${job.percent}%`;
    progress.dataset.state = job.state;
    if (job.state === "done") {
      const ticket = await api(`/api/redactions/${redactionId}/ticket`, { method: "POST" });
      const link = $("redact-download");
      link.href = ticket.url;
      link.setAttribute("download", `redaction-${redactionId}`);
      link.title = `Faces blurred in ${job.frames_with_faces} of ${job.frames} pictures; sha256 ${job.sha256}`;
      link.hidden = false;
      $("redact-button").disabled = false;
      return;
    }
    if (job.state === "failed") {
      showMessage(`Redaction failed 打码失败: ${job.error || "unknown error"}`);
      $("redact-button").disabled = false;
      return;
    }
    state.timer = setTimeout(() => follow(redactionId, streamId), POLL_MS);
  } catch (error) {
    showMessage(errorText(error));
    $("redact-button").disabled = false;
  }
}

$("redact-button").addEventListener("click", startRedaction);
