// The field officer's mobile page: stream the camera, receive, acknowledge and report directives
// done, call SOS, share the phone's position.

import { api, connectEvents } from "./api.js";
import {
  describeScope,
  isAcknowledged,
  isOverdue,
  mergeDirective,
  newestFirst,
  targetFor,
  TargetState,
} from "./directives.js";
import { PositionReporter } from "./position.js";
import { Publisher, StreamState } from "./publisher.js";
import { SosButton } from "./sos.js";
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

const ACKNOWLEDGED = TargetState.ACKNOWLEDGED;
const DONE = TargetState.DONE;
/** An ack sent over the websocket not confirmed by the server within this is sent again by POST. */
const ACK_CONFIRM_MS = 5000;
const VIBRATION_PATTERN = [300, 150, 300];
const BASE_TITLE = document.title;

const $ = (id) => document.getElementById(id);

const page = {
  user: null,
  events: null,
  wasConnected: false,
  publisher: null,
  sos: null, // SosButton
  position: null, // PositionReporter
  directives: new Map(), // directive id -> directive
  fresh: new Set(), // ids that arrived while the page was open and are not acknowledged yet
  acking: new Set(), // ids whose POST .../ack is on its way (button disabled)
  completing: new Set(), // ids whose POST .../done is on its way (button disabled)
  sentAcks: new Map(), // id -> {at, timer}: acks taken by the websocket, shown as done until confirmed
  ticker: null,
};

// ---- streaming ------------------------------------------------------------

function showStreamState(state, detail) {
  const node = $("stream-state");
  node.dataset.state = state;
  node.textContent = state === StreamState.ERROR && detail ? `error: ${detail}` : state;
  // While the publisher wants to stream (connecting, live, or waiting to retry) only Stop applies.
  const wanted = Boolean(page.publisher && page.publisher.wanted);
  $("start-stream").disabled = wanted;
  $("stop-stream").disabled = !wanted;
  document.body.classList.toggle("is-streaming", state === StreamState.LIVE);
}

// ---- directives -----------------------------------------------------------

/** This officer's entry in a directive's targets. */
function myTarget(directive) {
  return targetFor(directive, page.user.id);
}

/** Our state, counting an ack the websocket took that the server has not echoed yet. */
function myState(directive) {
  const target = myTarget(directive);
  const state = target ? target.state : TargetState.SENT;
  return page.sentAcks.has(directive.id) && !isAcknowledged(state) ? ACKNOWLEDGED : state;
}

function myAckTime(directive) {
  const target = myTarget(directive);
  return (target && target.acknowledged_at) || page.sentAcks.get(directive.id)?.at || null;
}

function actionsFor(directive, state) {
  const ackTime = myAckTime(directive);
  if (state === DONE) {
    const doneAt = myTarget(directive)?.done_at;
    return [
      el("span", { class: "state state-done" }, "done 已完成"),
      doneAt ? el("time", { class: "ack-time", datetime: doneAt }, `at ${formatTime(doneAt)}`) : null,
    ];
  }
  if (state === ACKNOWLEDGED) {
    // Done only once the server has the acknowledgement (an ack still on the websocket waits).
    const waiting = page.sentAcks.has(directive.id) || page.completing.has(directive.id);
    return [
      el("span", { class: "state state-acknowledged" }, ACKNOWLEDGED),
      ackTime ? el("time", { class: "ack-time", datetime: ackTime }, `at ${formatTime(ackTime)}`) : null,
      el(
        "button",
        { type: "button", class: "btn btn-primary btn-big done", disabled: waiting },
        "Done ",
        el("span", { lang: "zh" }, "完成"),
      ),
    ];
  }
  return [
    el("span", { class: `state state-${state}` }, state),
    el(
      "button",
      { type: "button", class: "btn btn-primary btn-big ack", disabled: page.acking.has(directive.id) },
      "Acknowledge ",
      el("span", { lang: "zh" }, "确认"),
    ),
  ];
}

function renderDirective(directive) {
  const state = myState(directive);
  const issuer = directive.issuer || {};
  const acknowledged = isAcknowledged(state);
  const scope = describeScope(directive);

  const item = el(
    "li",
    {
      class: "directive",
      dataset: {
        directiveId: directive.id,
        state,
        deadline: directive.deadline || "",
        completeBy: directive.complete_by || "",
      },
    },
    el(
      "div",
      { class: "directive-meta" },
      el("span", { class: "directive-issuer" }, `From 来自 ${issuer.display_name || issuer.username || "?"}`),
      el("time", { class: "directive-time", datetime: directive.created_at }, formatTime(directive.created_at)),
    ),
    scope ? el("p", { class: "directive-scope" }, scope) : null,
    el("p", { class: "directive-text" }, directive.text),
    el(
      "div",
      { class: "directive-foot" },
      el("span", { class: "directive-deadline" }),
      el("div", { class: "directive-actions" }, actionsFor(directive, state)),
    ),
  );
  item.classList.toggle("is-pending", !acknowledged);
  item.classList.toggle("is-new", page.fresh.has(directive.id) && !acknowledged);
  item.querySelector("button.ack")?.addEventListener("click", () => acknowledge(directive.id));
  item.querySelector("button.done")?.addEventListener("click", () => complete(directive.id));
  return item;
}

function renderDirectives() {
  // Still to acknowledge first, then still to do, then done; newest first within each.
  const stage = (directive) => ({ [DONE]: 0, [ACKNOWLEDGED]: 1 })[myState(directive)] ?? 2;
  const sorted = [...page.directives.values()].sort((a, b) => stage(b) - stage(a) || newestFirst(a, b));
  $("directives").replaceChildren(...sorted.map(renderDirective));
  $("directives-empty").hidden = sorted.length > 0;

  const pending = sorted.filter((directive) => !isAcknowledged(myState(directive))).length;
  const badge = $("pending-count");
  badge.hidden = pending === 0;
  badge.textContent = `${pending} to acknowledge 待确认`;
  document.title = pending ? `(${pending}) ${BASE_TITLE}` : BASE_TITLE;
  refreshDeadlines();
}

function refreshDeadlines() {
  for (const item of document.querySelectorAll("#directives .directive")) {
    const label = item.querySelector(".directive-deadline");
    const { state, deadline, completeBy } = item.dataset;
    const overdue = isOverdue({ deadline, complete_by: completeBy }, state);
    if (state === DONE) label.textContent = "";
    else if (state === ACKNOWLEDGED && completeBy) {
      const remaining = secondsUntil(completeBy);
      label.textContent = overdue
        ? `overdue 已超时 (done by ${formatTime(completeBy)})`
        : `done within ${formatDuration(remaining)} 剩余`;
    } else if (state === ACKNOWLEDGED) label.textContent = deadline ? `deadline ${formatTime(deadline)}` : "";
    else if (!deadline) label.textContent = "";
    else if (overdue) label.textContent = `overdue 已超时 (deadline ${formatTime(deadline)})`;
    else label.textContent = `acknowledge within ${formatDuration(secondsUntil(deadline))} 剩余`;
    item.classList.toggle("is-overdue", overdue);
  }
}

/** Make a new directive hard to miss: highlight, vibration, scroll into view. */
function announce(directive) {
  page.fresh.add(directive.id);
  if (typeof navigator.vibrate === "function") {
    try {
      navigator.vibrate(VIBRATION_PATTERN);
    } catch {
      // some browsers refuse without a recent user gesture; the highlight remains
    }
  }
  requestAnimationFrame(() => {
    document.querySelector(`#directives .directive[data-directive-id="${directive.id}"]`)?.scrollIntoView({
      behavior: "smooth",
      block: "nearest",
    });
  });
}

function upsertDirective(directive, { announceNew = false } = {}) {
  const isNew = !page.directives.has(directive.id);
  const merged = mergeDirective(page.directives.get(directive.id), directive);
  page.directives.set(directive.id, merged);
  const target = myTarget(merged);
  if (target && isAcknowledged(target.state)) {
    settleSentAck(directive.id); // the server has it: our own ack is confirmed
    page.fresh.delete(directive.id);
  }
  if (announceNew && isNew && !isAcknowledged(myState(merged))) announce(merged);
  renderDirectives();
}

function settleSentAck(directiveId) {
  const sent = page.sentAcks.get(directiveId);
  if (sent) clearTimeout(sent.timer);
  page.sentAcks.delete(directiveId);
}

/**
 * Acknowledge over the websocket when it is up (shown as done at once, then confirmed by the
 * server's echo or, failing that, by POST after ACK_CONFIRM_MS); by POST when it is down.
 */
async function acknowledge(directiveId) {
  if (page.sentAcks.has(directiveId) || page.acking.has(directiveId)) return;
  page.fresh.delete(directiveId);
  if (page.events && page.events.send({ type: "ack", directive_id: directiveId })) {
    const timer = setTimeout(() => acknowledgeByPost(directiveId), ACK_CONFIRM_MS);
    page.sentAcks.set(directiveId, { at: new Date().toISOString(), timer });
    renderDirectives();
    return;
  }
  await acknowledgeByPost(directiveId);
}

/** POST /api/directives/{id}/ack (idempotent); on failure the Acknowledge button comes back. */
async function acknowledgeByPost(directiveId) {
  page.acking.add(directiveId);
  renderDirectives();
  try {
    const directive = await api(`/api/directives/${directiveId}/ack`, { method: "POST" });
    page.acking.delete(directiveId);
    settleSentAck(directiveId);
    upsertDirective(directive);
  } catch (error) {
    page.acking.delete(directiveId);
    settleSentAck(directiveId);
    if (page.user) {
      renderDirectives();
      showMessage(`Acknowledgement not sent: ${errorText(error)} 确认失败`);
    }
  }
}

/** POST /api/directives/{id}/done (idempotent); on failure the Done button comes back. */
async function complete(directiveId) {
  if (page.completing.has(directiveId)) return;
  page.completing.add(directiveId);
  renderDirectives();
  try {
    const directive = await api(`/api/directives/${directiveId}/done`, { method: "POST" });
    page.completing.delete(directiveId);
    upsertDirective(directive);
  } catch (error) {
    page.completing.delete(directiveId);
    if (page.user) {
      renderDirectives();
      showMessage(`Not reported done: ${errorText(error)} 报告失败`);
    }
  }
}

async function loadDirectives() {
  const directives = await api("/api/directives");
  for (const directive of directives) {
    page.directives.set(directive.id, mergeDirective(page.directives.get(directive.id), directive));
  }
  renderDirectives();
}

// ---- websocket ------------------------------------------------------------

function onEvent(message) {
  switch (message.type) {
    case "directive":
      upsertDirective(message.directive, { announceNew: true });
      break;
    case "directive_update":
      upsertDirective(message.directive);
      break;
    case "alert": // my SOS arrived, and then was seen and resolved
    case "alert_update":
      page.sos.update(message.alert);
      break;
    case "error":
      showMessage(`Server: ${message.message}`);
      // The error may be about an ack we sent: let POST settle those now, with its own answer.
      for (const directiveId of [...page.sentAcks.keys()]) {
        settleSentAck(directiveId);
        acknowledgeByPost(directiveId);
      }
      break;
    default:
      break;
  }
}

function onStatus(status, info) {
  showConnectionStatus(status, info);
  if (status === "connected") {
    if (page.wasConnected) {
      loadDirectives().catch((error) => showMessage(`Directives: ${errorText(error)}`));
    }
    page.wasConnected = true;
  }
}

// ---- lifecycle ------------------------------------------------------------

function start(user) {
  if (page.user && page.user.id !== user.id) page.publisher.stop(); // someone else signed in
  page.user = user;
  showView(user);
  page.events = connectEvents(onEvent, onStatus);
  page.position.start();
  loadDirectives().catch((error) => showMessage(`Directives: ${errorText(error)}`));
  clearInterval(page.ticker);
  page.ticker = setInterval(refreshDeadlines, 1000);
}

/** Drop the session's live parts (websocket, directives) but leave the camera alone. */
function suspend() {
  page.events?.close();
  page.events = null;
  page.position.stop();
  page.wasConnected = false;
  clearInterval(page.ticker);
  page.directives.clear();
  page.sos.clear();
  page.fresh.clear();
  page.acking.clear();
  page.completing.clear();
  for (const directiveId of [...page.sentAcks.keys()]) settleSentAck(directiveId);
  renderDirectives();
}

function stop() {
  page.publisher.stop();
  suspend();
  page.user = null;
}

function init() {
  page.publisher = new Publisher($("preview"), showStreamState);
  page.position = new PositionReporter({
    send: (message) => Boolean(page.events && page.events.send(message)),
    state: $("position-state"),
  });
  page.sos = new SosButton({
    button: $("sos"),
    state: $("sos-state"),
    knownPosition: () => page.position.recent(),
  });
  showStreamState(StreamState.IDLE);
  $("start-stream").addEventListener("click", () => {
    clearMessage();
    page.publisher.start();
  });
  $("stop-stream").addEventListener("click", () => page.publisher.stop());
  // Closing the page ends the WHIP session (DELETE with keepalive).
  window.addEventListener("pagehide", () => page.publisher.stop());
  bindSession({
    start,
    stop,
    isActive: () => Boolean(page.user),
    onExpired: () => {
      // An expired token must not cut a running stream: it holds its own grant. Keep the camera
      // card on screen (with its Stop button) under the login form.
      suspend();
      $("app-view").hidden = !page.publisher.wanted;
    },
  });
}

init();
