// The command room's video wall: live stream tiles, the open alerts, the incidents (with their
// escalation), the escalations received, and the directive panel. An upper-court observer sees the
// incidents shared with it, their streams and the escalations sent to it.

import { AlertPanel } from "./alerts.js";
import { api, connectEvents } from "./api.js";
import { EscalationPanel, IncidentPanel } from "./escalations.js";
import { describeScope, isAcknowledged, isOverdue, mergeDirective, newestFirst, TargetState } from "./directives.js";
import { StreamTile } from "./stream_tile.js";
import {
  bindSession,
  clearMessage,
  el,
  errorText,
  formatDuration,
  formatTime,
  secondsUntil,
  showConnectionStatus,
  showMessage,
  showView,
} from "./ui.js";

/** Roles allowed to send directives (docs/api.md, POST /api/directives). */
const SENDER_ROLES = new Set(["commander", "leader", "admin"]);
/** Roles that see the command room's channel: every stream, alert and position. */
const WATCH_ROLES = new Set(["commander", "leader", "duty_officer", "admin"]);
const DIRECTIVES_SHOWN = 50;
const PEOPLE_REFRESH_DELAY_MS = 1000;
/** An upper-court observer gets no pushes when the streams of its shared incidents come and go (the
 * command channel is this court's): its wall looks again this often. */
const SHARED_STREAMS_EVERY_MS = 5000;

const $ = (id) => document.getElementById(id);

const page = {
  user: null,
  events: null,
  wasConnected: false,
  tiles: new Map(), // stream_id -> StreamTile
  positions: new Map(), // person id -> newest position (R9)
  directives: new Map(), // directive id -> directive
  changedDirectiveId: null,
  ticker: null,
  peopleTimer: null,
  sharedStreamsTimer: null,
  alerts: null, // AlertPanel
  incidents: null, // IncidentPanel
  escalations: null, // EscalationPanel
  focus: new URLSearchParams(window.location.search), // ?incident=N&stream=S, from an escalation's link
};

const isWatcher = () => WATCH_ROLES.has(page.user.role);

// ---- stream tiles ---------------------------------------------------------

const tileHooks = {
  onError(tile, message) {
    showMessage(`${tile.name}: ${message}`);
  },
  onListen(tile) {
    const listening = tile.element.classList.contains("is-listening");
    for (const other of page.tiles.values()) other.setListening(false);
    if (!listening) tile.setListening(true);
  },
};

function updateStreamCount() {
  const count = page.tiles.size;
  $("stream-count").textContent = String(count);
  $("wall-empty").hidden = count > 0;
  $("wall-grid").dataset.count = String(count);
}

function addStream(stream) {
  const existing = page.tiles.get(stream.stream_id);
  if (existing) {
    existing.update(stream);
    return;
  }
  const tile = new StreamTile(stream, tileHooks);
  tile.setPosition(page.positions.get(tile.officerId) || null);
  if (tile.id === page.focus.get("stream")) tile.element.classList.add("is-focused");
  page.tiles.set(tile.id, tile);
  $("wall-grid").append(tile.element);
  updateStreamCount();
  tile.connect();
}

function removeStream(streamId, { streamEnded = false } = {}) {
  const tile = page.tiles.get(streamId);
  if (!tile) return;
  page.tiles.delete(streamId);
  tile.close({ streamEnded });
  updateStreamCount();
}

function removeAllStreams() {
  for (const id of [...page.tiles.keys()]) removeStream(id);
}

/** An observer's streams: those of the incidents shared with it, watched with the incident's grant. */
async function sharedStreams() {
  await page.incidents.load();
  const lists = await Promise.all(
    [...page.incidents.incidents.keys()].map(async (id) =>
      (await api(`/api/incidents/${id}/streams`)).map((stream) => ({
        ...stream,
        grant_path: `/api/incidents/${id}/grants/view`,
      })),
    ),
  );
  return lists.flat();
}

async function loadStreams() {
  const streams = isWatcher() ? await api("/api/streams") : await sharedStreams();
  const live = new Set(streams.map((stream) => stream.stream_id));
  for (const id of [...page.tiles.keys()]) if (!live.has(id)) removeStream(id, { streamEnded: true });
  for (const stream of streams) addStream(stream);
}

// ---- positions (R9) -------------------------------------------------------

function notePositions(positions) {
  for (const position of positions) {
    const known = page.positions.get(position.person_id);
    if (!known || Date.parse(position.at) >= Date.parse(known.at)) page.positions.set(position.person_id, position);
  }
  for (const tile of page.tiles.values()) {
    const position = page.positions.get(tile.officerId);
    if (position && position !== tile.position) tile.setPosition(position);
  }
}

async function loadPositions() {
  if (!isWatcher()) return;
  const latest = await api("/api/positions/latest?limit=1000");
  notePositions(latest.items);
}

/** Age the "12 s ago" on each tile. */
function refreshPositions() {
  for (const tile of page.tiles.values()) if (tile.position) tile.setPosition();
}

// ---- people ---------------------------------------------------------------

function personLabel(person) {
  const name = person.display_name || person.username;
  return `${name} — ${person.online ? "online 在线" : "offline 离线"}`;
}

async function loadPeople() {
  if (!SENDER_ROLES.has(page.user.role)) return;
  const people = await api("/api/people?role=field_officer");
  people.sort(
    (a, b) =>
      Number(b.online) - Number(a.online) ||
      (a.display_name || a.username).localeCompare(b.display_name || b.username),
  );
  const select = $("directive-target");
  const selected = select.value;
  select.replaceChildren(
    el("option", { value: "" }, "Choose an officer… 选择执法人员"),
    ...people.map((person) => el("option", { value: person.id, dataset: { online: person.online } }, personLabel(person))),
  );
  if (people.some((person) => String(person.id) === selected)) select.value = selected;
}

/** Presence has no websocket event; refresh it shortly after streams come and go. */
function schedulePeopleRefresh() {
  clearTimeout(page.peopleTimer);
  page.peopleTimer = setTimeout(() => {
    loadPeople().catch((error) => showMessage(`Officers: ${errorText(error)}`));
  }, PEOPLE_REFRESH_DELAY_MS);
}

// ---- directives -----------------------------------------------------------

function renderTarget(target) {
  const person = target.person || {};
  const at = {
    [TargetState.DONE]: target.done_at,
    [TargetState.ACKNOWLEDGED]: target.acknowledged_at,
    [TargetState.DELIVERED]: target.delivered_at,
  }[target.state];
  return el(
    "li",
    { class: "target", dataset: { personId: person.id, state: target.state } },
    el("span", { class: "target-name" }, person.display_name || person.username || `#${person.id}`),
    el("span", { class: `state state-${target.state}` }, target.state === TargetState.DONE ? "done 已完成" : target.state),
    at ? el("time", { class: "target-time", datetime: at }, `at ${formatTime(at)}`) : null,
    el("span", { class: "state state-overdue", hidden: true }, "overdue 已超时"),
    target.escalations > 0
      ? el("span", { class: "state state-escalated", title: "Not acknowledged in time: escalated" },
        `escalated ×${target.escalations} 已上报`)
      : null,
  );
}

function renderDirective(directive) {
  const issuer = directive.issuer || {};
  const scope = describeScope(directive);
  const item = el(
    "li",
    {
      class: "directive",
      dataset: {
        directiveId: directive.id,
        deadline: directive.deadline || "",
        completeBy: directive.complete_by || "",
        origin: directive.origin || "center",
      },
    },
    el(
      "div",
      { class: "directive-meta" },
      el("time", { class: "directive-time", datetime: directive.created_at }, formatTime(directive.created_at)),
      el("span", { class: "directive-issuer" }, `by ${issuer.display_name || issuer.username || "?"}`),
      el("span", { class: "directive-deadline" }),
    ),
    scope ? el("p", { class: "directive-scope" }, scope) : null,
    el("p", { class: "directive-text" }, directive.text),
    el("ul", { class: "targets" }, (directive.targets || []).map(renderTarget)),
  );
  if (directive.id === page.changedDirectiveId) item.classList.add("is-changed");
  return item;
}

function renderDirectives() {
  const sorted = [...page.directives.values()].sort(newestFirst);
  $("directive-list").replaceChildren(...sorted.slice(0, DIRECTIVES_SHOWN).map(renderDirective));
  $("directive-empty").hidden = sorted.length > 0;
  page.changedDirectiveId = null;
  refreshDeadlines();
}

function upsertDirective(directive) {
  page.directives.set(directive.id, mergeDirective(page.directives.get(directive.id), directive));
  page.changedDirectiveId = directive.id;
  renderDirectives();
}

/** Deadline countdowns and overdue marks per target (acknowledge, then done), every second. */
function refreshDeadlines() {
  for (const item of document.querySelectorAll("#directive-list .directive")) {
    const { deadline, completeBy } = item.dataset;
    const times = { deadline, complete_by: completeBy };
    const targets = [...item.querySelectorAll(".target")];
    const states = targets.map((target) => target.dataset.state);
    let late = 0;
    for (const target of targets) {
      const overdue = isOverdue(times, target.dataset.state);
      late += Number(overdue);
      target.classList.toggle("is-overdue", overdue);
      target.querySelector(".state-overdue").hidden = !overdue;
    }
    const label = item.querySelector(".directive-deadline");
    const unacknowledged = states.filter((state) => !isAcknowledged(state)).length;
    const undone = states.filter((state) => state !== TargetState.DONE).length;
    if (undone === 0) label.textContent = "all done 全部完成";
    else if (late > 0) label.textContent = `${late} overdue 已超时`;
    else if (unacknowledged > 0 && deadline) label.textContent = `${formatDuration(secondsUntil(deadline))} left 剩余`;
    else if (completeBy) label.textContent = `all acknowledged · done within ${formatDuration(secondsUntil(completeBy))}`;
    else label.textContent = "all acknowledged 全部确认";
    item.classList.toggle("is-overdue", late > 0);
  }
}

async function loadDirectives() {
  const directives = await api("/api/directives");
  for (const directive of directives) {
    page.directives.set(directive.id, mergeDirective(page.directives.get(directive.id), directive));
  }
  renderDirectives();
}

function configureDirectiveForm() {
  const form = $("directive-form");
  const allowed = SENDER_ROLES.has(page.user.role);
  for (const control of form.elements) control.disabled = !allowed;
  const note = $("directive-note");
  note.hidden = allowed;
  note.textContent = allowed ? "" : "Only commanders, leaders and admins can send directives. 仅指挥员可下达指令。";
}

async function sendDirective(event) {
  event.preventDefault();
  const form = $("directive-form");
  const targetId = Number.parseInt($("directive-target").value, 10);
  const text = $("directive-text").value.trim();
  const deadline = Number($("directive-deadline").value);

  if (!Number.isInteger(targetId)) return showMessage("Choose an officer to send the directive to. 请选择执法人员");
  if (!text) return showMessage("Write the directive first. 请输入指令内容");
  if (!Number.isInteger(deadline) || deadline < 1) {
    return showMessage("The acknowledgement deadline must be a whole number of seconds, at least 1. 确认时限须为正整数");
  }

  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const directive = await api("/api/directives", {
      method: "POST",
      body: { target_ids: [targetId], text, ack_deadline_seconds: deadline },
    });
    upsertDirective(directive);
    $("directive-text").value = "";
    clearMessage();
  } catch (error) {
    showMessage(`Directive not sent: ${errorText(error)}`);
  } finally {
    button.disabled = false;
  }
}

// ---- websocket ------------------------------------------------------------

function onEvent(message) {
  switch (message.type) {
    case "stream_up":
      addStream(message.stream);
      schedulePeopleRefresh();
      break;
    case "stream_down":
      removeStream(message.stream_id, { streamEnded: true });
      schedulePeopleRefresh();
      break;
    case "alert":
      page.alerts.upsert(message.alert);
      if (message.alert.level === "critical") showMessage(`⚠ ${message.alert.message}`);
      break;
    case "alert_update":
      page.alerts.upsert(message.alert);
      break;
    case "stream_health":
      page.tiles.get(message.stream_id)?.setHealth(message.flags);
      break;
    case "directive":
    case "directive_update":
    case "escalation": // a target missed its deadline: the directive shows how often it was escalated
      upsertDirective(message.directive);
      break;
    case "incident_escalation": // an incident reported up (R6): to me, or seen by the command room
    case "incident_escalation_update":
      onIncidentEscalation(message.escalation, message.type === "incident_escalation");
      break;
    case "positions": // each officer's newest, at most once a second
      notePositions(message.positions);
      break;
    case "error":
      showMessage(`Server: ${message.message}`);
      break;
    default:
      break;
  }
}

function onIncidentEscalation(escalation, isNew) {
  if (isNew) page.incidents.noteEscalated(escalation);
  if (page.escalations.upsert(escalation)) {
    const incident = escalation.package.incident || {};
    showMessage(`↑ Escalated to you: ${incident.title || `incident ${escalation.incident_id}`} — ${escalation.reason}`);
    if (!isWatcher()) loadStreams().catch((error) => showMessage(`Streams: ${errorText(error)}`));
  }
}

function onStatus(status, info) {
  showConnectionStatus(status, info);
  if (status === "connected") {
    // Events may have been missed while the socket was down: catch up.
    if (page.wasConnected) refreshAll();
    page.wasConnected = true;
  }
}

// ---- lifecycle ------------------------------------------------------------

async function refreshAll() {
  const watcher = isWatcher();
  const results = await Promise.allSettled([
    loadStreams(),
    watcher ? page.alerts.load() : null,
    loadDirectives(),
    loadPeople(),
    loadPositions(),
    watcher ? page.incidents.load() : null, // an observer's come with its streams
    page.escalations.load(),
  ]);
  const labels = ["Streams", "Alerts", "Directives", "Officers", "Positions", "Incidents", "Escalations"];
  const problems = results
    .map((result, index) => (result.status === "rejected" ? `${labels[index]}: ${errorText(result.reason)}` : null))
    .filter(Boolean);
  if (problems.length) showMessage(problems.join(" · "));
}

function start(user) {
  page.user = user;
  showView(user);
  if (user.role === "field_officer") {
    showMessage("The video wall is for the command room. Field officers use the officer page (/officer). 执法人员请使用 /officer 页面");
    return;
  }
  configureDirectiveForm();
  page.incidents = new IncidentPanel({
    list: $("incident-list"),
    empty: $("incident-empty"),
    count: $("incident-count"),
    user,
    focusId: Number(page.focus.get("incident")) || null,
  });
  page.escalations = new EscalationPanel({
    panel: $("escalation-panel"),
    list: $("escalation-list"),
    count: $("escalation-count"),
    user,
  });
  $("alert-panel").hidden = !isWatcher();
  updateStreamCount();
  page.events = connectEvents(onEvent, onStatus);
  refreshAll();
  page.ticker = setInterval(() => {
    refreshDeadlines();
    refreshPositions();
  }, 1000);
  if (!isWatcher()) {
    page.sharedStreamsTimer = setInterval(() => {
      if (page.events?.isReady()) loadStreams().catch((error) => showMessage(`Streams: ${errorText(error)}`));
    }, SHARED_STREAMS_EVERY_MS);
  }
}

function stop() {
  page.events?.close();
  page.events = null;
  page.wasConnected = false;
  clearInterval(page.ticker);
  clearInterval(page.sharedStreamsTimer);
  clearTimeout(page.peopleTimer);
  removeAllStreams();
  page.alerts.clear();
  page.incidents?.clear();
  page.escalations?.clear();
  page.directives.clear();
  page.positions.clear();
  renderDirectives();
  page.user = null;
}

function init() {
  page.alerts = new AlertPanel({ list: $("alert-list"), empty: $("alert-empty"), count: $("alert-count") });
  $("directive-form").addEventListener("submit", sendDirective);
  // Closing the page ends the relay sessions (DELETE with keepalive).
  window.addEventListener("pagehide", () => removeAllStreams());
  window.addEventListener("pageshow", (event) => {
    if (event.persisted && page.user && page.events) refreshAll();
  });
  bindSession({ start, stop, isActive: () => Boolean(page.user) });
}

init();
