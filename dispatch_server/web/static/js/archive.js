// The recordings archive: search recorded streams, play one with a gap-marked timeline, verify it,
// export it as an evidence package. Contract: docs/api.md (Recordings archive).

import { api } from "./api.js";
import { clearRetention, showRetention } from "./archive_holds.js";
import { clearRedaction, showRedaction } from "./archive_redaction.js";
import { bindSession, clearMessage, el, errorText, formatDuration, showMessage, showView } from "./ui.js";

/** Roles that may export (docs/api.md, POST /api/exports). */
const EXPORT_ROLES = new Set(["commander", "leader", "admin"]);
const EXPORT_POLL_MS = 500;

const $ = (id) => document.getElementById(id);

const page = {
  user: null,
  recordings: new Map(), // stream_id -> recording
  current: null, // the recording in the player
  playback: null, // { segments: [{startMs, length}], offset } of what the player is playing
  axis: null, // { startMs, endMs } of the timeline
  exportTimer: null,
};

// ---- pure helpers ---------------------------------------------------------

const ms = (iso) => new Date(iso).getTime();

/** ISO 8601 (UTC) of a datetime-local input's value, or null. */
function inputToIso(value) {
  if (!value) return null;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
}

function formatDateTime(msOrIso) {
  const date = new Date(msOrIso);
  if (Number.isNaN(date.getTime())) return "";
  return date.toLocaleString([], {
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
  });
}

/** Seconds of media in a segment (its first to its last frame, plus about one frame). */
function segmentLength(segment) {
  return Math.max(0, segment.media_end - segment.media_start) + 1 / 15;
}

/** What plays from `startMs`: the segments from the one holding it, and how far into it. */
export function playbackPlan(recording, startMs) {
  const segments = recording.segments.filter((s) => s.video_frames + s.audio_frames > 0);
  let first = segments.findIndex((s) => ms(s.ended_at) > startMs);
  if (first < 0) first = 0;
  const chosen = segments.slice(first);
  const offset = chosen.length ? Math.max(0, (startMs - ms(chosen[0].started_at)) / 1000) : 0;
  return { offset, segments: chosen.map((s) => ({ startMs: ms(s.started_at), length: segmentLength(s) })) };
}

/** The wall-clock time (ms) shown at `seconds` into a playback (gaps are skipped by the player). */
export function wallClockAt(plan, seconds) {
  let remaining = seconds + plan.offset;
  for (const [index, segment] of plan.segments.entries()) {
    if (remaining <= segment.length || index === plan.segments.length - 1) {
      return segment.startMs + remaining * 1000;
    }
    remaining -= segment.length;
  }
  return null;
}

// ---- search -----------------------------------------------------------------

async function loadOfficers() {
  const select = $("search-officer");
  try {
    const people = await api("/api/people?role=field_officer");
    select.replaceChildren(
      el("option", { value: "" }, "Everyone 全部"),
      ...people.map((person) => el("option", { value: person.id }, `${person.display_name} (${person.username})`)),
    );
  } catch (error) {
    showMessage(`Officers could not be loaded: ${errorText(error)}`);
  }
}

async function search(event) {
  event?.preventDefault();
  const params = new URLSearchParams();
  const officer = $("search-officer").value;
  if (officer) params.append("officer_id", officer);
  const from = inputToIso($("search-from").value);
  const to = inputToIso($("search-to").value);
  if (from) params.set("from", from);
  if (to) params.set("to", to);
  try {
    const recordings = await api(`/api/recordings?${params}`);
    page.recordings = new Map(recordings.map((recording) => [recording.stream_id, recording]));
    renderList();
  } catch (error) {
    showMessage(errorText(error));
  }
}

function renderList() {
  const list = $("recording-list");
  const items = [...page.recordings.values()].map((recording) => {
    const seconds = recording.segments.reduce((total, s) => total + segmentLength(s), 0);
    const button = el(
      "button",
      {
        type: "button",
        class: "recording",
        dataset: { streamId: recording.stream_id },
        "aria-current": page.current?.stream_id === recording.stream_id ? "true" : "false",
      },
      el("span", { class: "recording-officer" }, `${recording.officer.display_name} · ${recording.device}`),
      el("span", { class: "recording-meta" }, `${formatDateTime(recording.started_at)} · ${formatDuration(seconds)}`),
      el(
        "span",
        { class: "recording-meta" },
        `${recording.segments.length} segment(s) 段`,
        recording.gaps.length ? el("span", { class: "badge-gaps" }, ` · ${recording.gaps.length} gap(s) 中断`) : "",
        recording.live ? el("span", { class: "badge badge-live" }, " LIVE") : "",
      ),
    );
    button.addEventListener("click", () => choose(recording.stream_id));
    return el("li", {}, button);
  });
  list.replaceChildren(...items);
  $("recording-count").textContent = String(items.length);
  $("recording-empty").hidden = items.length > 0;
}

// ---- the player ---------------------------------------------------------------

function choose(streamId) {
  const recording = page.recordings.get(streamId);
  if (!recording) return;
  page.current = recording;
  for (const node of document.querySelectorAll(".recording")) {
    node.setAttribute("aria-current", node.dataset.streamId === streamId ? "true" : "false");
  }
  $("player-empty").hidden = true;
  $("player-view").hidden = false;
  $("player-title").textContent =
    `${recording.officer.display_name} (${recording.officer.username}) · ${recording.device} · ` +
    `${recording.video_codec || "-"}/${recording.audio_codec || "-"} · ${recording.stream_id}`;
  $("verify-result").hidden = true;
  resetExport();
  showRetention(recording.stream_id, page.user);
  showRedaction(recording.stream_id, page.user);
  drawTimeline(recording);
  play(null);
}

function drawTimeline(recording) {
  const times = [
    ...recording.segments.flatMap((s) => [ms(s.started_at), ms(s.ended_at)]),
    ...recording.gaps.flatMap((g) => [g.started_at ? ms(g.started_at) : ms(g.ended_at), ms(g.ended_at)]),
  ];
  const startMs = Math.min(...times);
  const endMs = Math.max(...times, startMs + 1000);
  page.axis = { startMs, endMs };
  const percent = (value) => `${((100 * (value - startMs)) / (endMs - startMs)).toFixed(3)}%`;
  const width = (from, to) => `${((100 * Math.max(0, to - from)) / (endMs - startMs)).toFixed(3)}%`;
  const blocks = [
    ...recording.segments.map((s) =>
      el("div", {
        class: "tl-segment",
        title: `#${s.sequence} ${formatDateTime(s.started_at)} – ${formatDateTime(s.ended_at)}`,
        style: `left:${percent(ms(s.started_at))};width:${width(ms(s.started_at), ms(s.ended_at))}`,
      }),
    ),
    ...recording.gaps.map((g) => {
      const from = g.started_at ? ms(g.started_at) : ms(g.ended_at);
      return el("div", {
        class: "tl-gap",
        title: `gap 中断: ${g.reason}`,
        dataset: { reason: g.reason },
        style: `left:${percent(from)};width:${width(from, ms(g.ended_at))}`,
      });
    }),
  ];
  $("timeline").replaceChildren(...blocks, el("div", { id: "timeline-cursor", class: "timeline-cursor" }));
  $("timeline-start").textContent = formatDateTime(startMs);
  $("timeline-end").textContent = formatDateTime(endMs);
  $("gap-list").replaceChildren(
    ...recording.gaps.map((g) =>
      el(
        "li",
        {},
        `${g.started_at ? formatDateTime(g.started_at) : "?"} – ${formatDateTime(g.ended_at)}: ${g.reason}`,
      ),
    ),
  );
}

async function play(startIso) {
  const recording = page.current;
  if (!recording) return;
  const video = $("player");
  const startMs = startIso ? ms(startIso) : ms(recording.segments[0].started_at);
  try {
    const query = startIso ? `?start=${encodeURIComponent(startIso)}` : "";
    const ticket = await api(`/api/recordings/${encodeURIComponent(recording.stream_id)}/ticket${query}`, {
      method: "POST",
    });
    if (page.current !== recording) return;
    page.playback = playbackPlan(recording, startMs);
    video.src = ticket.url;
    try {
      await video.play();
    } catch {
      video.muted = true; // autoplay with sound refused: start muted; the controls unmute
      await video.play().catch(() => {});
    }
  } catch (error) {
    showMessage(errorText(error));
  }
}

function showPosition() {
  const video = $("player");
  if (!page.playback || !page.axis) return;
  const wall = wallClockAt(page.playback, video.currentTime || 0);
  if (wall === null) return;
  const { startMs, endMs } = page.axis;
  const fraction = Math.min(1, Math.max(0, (wall - startMs) / (endMs - startMs)));
  const cursor = $("timeline-cursor");
  if (cursor) cursor.style.left = `${(fraction * 100).toFixed(3)}%`;
  $("timeline").setAttribute("aria-valuenow", String(Math.round(fraction * 100)));
  $("player-clock").textContent = formatDateTime(wall);
}

/** Seek: a click on the timeline plays from that moment (from the gap's end when it falls in one). */
function seekFromTimeline(event) {
  const recording = page.current;
  if (!recording || !page.axis) return;
  const box = $("timeline").getBoundingClientRect();
  const fraction = Math.min(1, Math.max(0, (event.clientX - box.left) / box.width));
  let target = page.axis.startMs + fraction * (page.axis.endMs - page.axis.startMs);
  for (const gap of recording.gaps) {
    const from = gap.started_at ? ms(gap.started_at) : ms(gap.ended_at);
    if (target >= from && target < ms(gap.ended_at)) target = ms(gap.ended_at);
  }
  const first = ms(recording.segments[0].started_at);
  play(new Date(Math.max(first, target)).toISOString());
}

// ---- verify and export ---------------------------------------------------------

async function verify() {
  const recording = page.current;
  if (!recording) return;
  const note = $("verify-result");
  note.hidden = false;
  note.textContent = "Checking… 校验中";
  try {
    const report = await api(`/api/recordings/${encodeURIComponent(recording.stream_id)}/verify`, {
      method: "POST",
    });
    note.dataset.ok = String(report.ok);
    note.textContent = report.ok
      ? `Intact 完整: ${report.segments} segment(s), ${report.gaps} gap(s), chain head ${report.head.slice(0, 12)}…`
      : `${report.problems.length} problem(s) 发现问题: ` +
        report.problems.map((p) => `${p.file || `line ${p.line}`}: ${p.kind}`).join("; ");
  } catch (error) {
    note.textContent = errorText(error);
  }
}

function resetExport() {
  clearTimeout(page.exportTimer);
  page.exportTimer = null;
  $("export-progress").hidden = true;
  $("export-download").hidden = true;
  $("export-button").disabled = false;
  $("export-button").hidden = !EXPORT_ROLES.has(page.user?.role);
}

async function startExport() {
  const recording = page.current;
  if (!recording) return;
  resetExport();
  $("export-button").disabled = true;
  const progress = $("export-progress");
  progress.hidden = false;
  progress.textContent = "0%";
  try {
    const job = await api("/api/exports", { method: "POST", body: { stream_ids: [recording.stream_id] } });
    followExport(job.id);
  } catch (error) {
    progress.hidden = true;
    $("export-button").disabled = false;
    showMessage(errorText(error));
  }
}

async function followExport(exportId) {
  const progress = $("export-progress");
  try {
    const job = await api(`/api/exports/${exportId}`);
    progress.textContent = `${job.percent}%`;
    progress.dataset.state = job.state;
    if (job.state === "done") {
      const ticket = await api(`/api/exports/${exportId}/ticket`, { method: "POST" });
      const link = $("export-download");
      link.href = ticket.url;
      link.setAttribute("download", `evidence-${exportId}.zip`);
      link.hidden = false;
      $("export-button").disabled = false;
      return;
    }
    if (job.state === "failed") {
      showMessage(`Export failed 导出失败: ${job.error || "unknown error"}`);
      $("export-button").disabled = false;
      return;
    }
    page.exportTimer = setTimeout(() => followExport(exportId), EXPORT_POLL_MS);
  } catch (error) {
    showMessage(errorText(error));
    $("export-button").disabled = false;
  }
}

// ---- page -------------------------------------------------------------------------

function start(user) {
  page.user = user;
  showView(user);
  resetExport();
  loadOfficers();
  search();
}

function stop() {
  const video = $("player");
  video.removeAttribute("src");
  video.load();
  clearTimeout(page.exportTimer);
  page.user = null;
  page.current = null;
  page.recordings.clear();
  clearRetention();
  clearRedaction();
  renderList();
  $("player-view").hidden = true;
  $("player-empty").hidden = false;
}

function init() {
  $("search-form").addEventListener("submit", search);
  $("timeline").addEventListener("click", seekFromTimeline);
  $("player").addEventListener("timeupdate", showPosition);
  $("verify-button").addEventListener("click", verify);
  $("export-button").addEventListener("click", startExport);
  bindSession({ start, stop, isActive: () => Boolean(page.user) });
}

init();
