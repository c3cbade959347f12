// The duty page (R10): today's roster and who is signed in, signing in and out, handovers with
// their open items, and the duty log. Contract: docs/api.md (Duty). Times are shown in the
// court's time zone (the board's `time_zone`), whatever the browser's.

import { api, connectEvents } from "./api.js";
import { bindSession, el, errorText, showConnectionStatus, showMessage, showView } from "./ui.js";

/** Roles that run duty (docs/api.md); a post with no `roles` may be held by any of them. */
const DUTY_ROLES = new Set(["duty_officer", "commander", "leader", "admin"]);
const KIND_LABELS = { call: "Call 来电", visit: "Visit 来访", event: "Event 事件", note: "Note 备注" };
const REFRESH_DELAY_MS = 150;

const $ = (id) => document.getElementById(id);

const page = {
  user: null,
  board: null, // GET /api/duty/board
  emptySeats: new Set(), // posts with an open empty_seat alert
  people: [],
  correcting: null, // the log entry a new one corrects
  events: null,
  refreshTimer: null,
};

// ---- pure helpers ---------------------------------------------------------

function courtZone() {
  return page.board?.time_zone || undefined;
}

/** HH:MM in the court's time zone. */
export function clock(iso, timeZone = courtZone()) {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  return date.toLocaleTimeString([], { timeZone, hour: "2-digit", minute: "2-digit", hour12: false });
}

/** "HH:MM – HH:MM", with the end's date when it is another day. */
function span(startIso, endIso) {
  const day = (iso) => new Date(iso).toLocaleDateString("en-CA", { timeZone: courtZone() });
  const sameDay = day(startIso) === day(endIso);
  const end = sameDay ? clock(endIso) : `${clock(endIso)} (+1)`;
  return `${clock(startIso)} – ${end}`;
}

/** Whether this user's role may hold the post. */
export function mayHold(post, role) {
  return post.roles.length ? post.roles.includes(role) : DUTY_ROLES.has(role);
}

function mySignIn(post) {
  return post.signed_in.find((s) => s.person.id === page.user?.id) || null;
}

function postName(key) {
  return page.board?.posts.find((post) => post.key === key)?.name || key;
}

function personName(person) {
  return person ? person.display_name || person.username : "";
}

// ---- the roster -------------------------------------------------------------

async function loadBoard() {
  const [board, alerts] = await Promise.all([
    api("/api/duty/board"),
    api("/api/alerts?kind=empty_seat&limit=200").catch(() => ({ items: [] })),
  ]);
  page.board = board;
  page.emptySeats = new Set(alerts.items.map((a) => a.subject.replace(/^seat:/, "")));
  renderBoard();
  renderMyPosts();
  renderHandoverPosts();
}

function renderBoard() {
  const board = page.board;
  const periods = board.periods.map((p) => span(p.starts_at, p.ends_at)).join(", ");
  $("roster-day").textContent =
    `${board.day} · ${board.time_zone} · ` + (periods ? `working hours 工作时间 ${periods}` : "no working hours 非工作日");
  const state = $("working-state");
  state.dataset.working = String(board.working_now);
  state.textContent = board.working_now ? "Working hours 工作时间" : "Off hours 非工作时间";

  $("post-list").replaceChildren(
    ...board.posts.map((post) => {
      const empty = page.emptySeats.has(post.key);
      return el(
        "li",
        { class: `post${empty ? " is-empty-seat" : ""}`, dataset: { post: post.key } },
        el(
          "div",
          { class: "post-head" },
          el("span", { class: "post-name" }, post.name),
          post.required ? el("span", { class: "badge badge-required" }, "required 必须在岗") : "",
          empty ? el("span", { class: "badge badge-empty" }, "EMPTY SEAT 空岗") : "",
          el(
            "span",
            { class: "post-holder" },
            post.holder ? `on duty 在岗: ${personName(post.holder)}` : "nobody 无人",
          ),
        ),
        el(
          "ul",
          { class: "signed-in-list", "aria-label": "Signed in 已签到" },
          post.signed_in.length
            ? post.signed_in.map((s) =>
                el(
                  "li",
                  { class: "signed-in", dataset: { personId: s.person.id } },
                  el("span", { class: "presence" }),
                  `${personName(s.person)} · since ${clock(s.signed_in_at)}`,
                  s.late ? el("span", { class: "state state-late" }, `late ${Math.round(s.late_seconds / 60)} min 迟到`) : "",
                  s.unscheduled ? el("span", { class: "state state-unscheduled" }, "unscheduled 未排班") : "",
                ),
              )
            : el("li", { class: "signed-in is-none" }, "Nobody signed in 无人签到"),
        ),
        el(
          "ol",
          { class: "shift-list", "aria-label": "Shifts 排班" },
          post.shifts.length
            ? post.shifts.map((s) =>
                el(
                  "li",
                  { class: "shift" },
                  el("span", { class: "shift-time" }, span(s.starts_at, s.ends_at)),
                  el("span", {}, personName(s.person)),
                  s.note ? el("span", { class: "shift-note" }, s.note) : "",
                ),
              )
            : el("li", { class: "shift is-none" }, "No shift rostered today 今日未排班"),
        ),
      );
    }),
  );
}

// ---- signing in and out -------------------------------------------------------

function renderMyPosts() {
  const mine = page.board.posts.filter((post) => mayHold(post, page.user.role));
  $("my-posts-empty").hidden = mine.length > 0;
  $("my-posts").replaceChildren(
    ...mine.map((post) => {
      const signed = mySignIn(post);
      const button = el(
        "button",
        {
          type: "button",
          class: `btn ${signed ? "sign-out" : "btn-primary sign-in"}`,
          dataset: { post: post.key },
        },
        signed ? "Sign out 签退" : "Sign in 签到",
      );
      button.addEventListener("click", () => toggleSignIn(post.key, Boolean(signed), button));
      return el(
        "li",
        { class: "my-post", dataset: { post: post.key, signedIn: String(Boolean(signed)) } },
        el(
          "span",
          { class: "my-post-text" },
          el("span", { class: "post-name" }, post.name),
          el(
            "span",
            { class: "my-post-state" },
            signed
              ? `signed in 已签到 ${clock(signed.signed_in_at)}${signed.late ? " · late 迟到" : ""}`
              : "not signed in 未签到",
          ),
        ),
        button,
      );
    }),
  );
}

async function toggleSignIn(post, signedIn, button) {
  button.disabled = true;
  try {
    const record = await api(signedIn ? "/api/duty/sign-out" : "/api/duty/sign-in", {
      method: "POST",
      body: { post },
    });
    if (!signedIn && record.late) showMessage(`Signed in late 迟到签到: ${Math.round(record.late_seconds / 60)} min`, "info");
    if (!signedIn && record.unscheduled) showMessage("Signed in without a shift 未排班签到", "info");
    await loadBoard();
  } catch (error) {
    showMessage(errorText(error));
    button.disabled = false;
  }
}

// ---- handovers ------------------------------------------------------------------

function renderHandoverPosts() {
  const select = $("handover-post");
  const chosen = select.value;
  const mine = page.board.posts.filter((post) => mySignIn(post));
  select.replaceChildren(
    ...(mine.length
      ? mine.map((post) => el("option", { value: post.key }, post.name))
      : [el("option", { value: "" }, "Sign in on a post first 请先签到")]),
  );
  if (mine.some((post) => post.key === chosen)) select.value = chosen;
  $("handover-form").querySelector("button[type=submit]").disabled = mine.length === 0;
  loadOpenItems();
}

async function loadPeople() {
  try {
    page.people = (await api("/api/people")).filter((p) => DUTY_ROLES.has(p.role) && p.id !== page.user.id);
  } catch (error) {
    page.people = [];
    showMessage(`People could not be loaded: ${errorText(error)}`);
  }
  $("handover-to").replaceChildren(
    el("option", { value: "" }, "Next on the roster 按排班"),
    ...page.people.map((p) => el("option", { value: p.id }, `${personName(p)} (${p.role.replaceAll("_", " ")})`)),
  );
}

async function loadOpenItems() {
  const post = $("handover-post").value;
  const items = post ? await api(`/api/duty/items?post=${encodeURIComponent(post)}`).catch(() => []) : [];
  $("open-items-empty").hidden = items.length > 0;
  $("open-item-list").replaceChildren(
    ...items.map((item) =>
      el(
        "li",
        { class: "open-item" },
        el(
          "label",
          { class: "check" },
          el("input", { type: "checkbox", name: "close", value: item.id }),
          el("span", {}, item.text, linkText(item)),
        ),
      ),
    ),
  );
}

function linkText(item) {
  const links = [
    item.incident_id ? `incident ${item.incident_id}` : "",
    item.directive_id ? `directive ${item.directive_id}` : "",
    item.alert_id ? `alert ${item.alert_id}` : "",
  ].filter(Boolean);
  return links.length ? el("span", { class: "item-links" }, ` · ${links.join(", ")}`) : "";
}

async function loadPending() {
  const pending = await api("/api/duty/handovers?pending=true");
  $("pending-empty").hidden = pending.length > 0;
  $("pending-list").replaceChildren(
    ...pending.map((handover) => {
      const forMe = !handover.to_person || handover.to_person.id === page.user.id;
      const mine = handover.from_person.id === page.user.id;
      const accept = el("button", { type: "button", class: "btn btn-small btn-primary accept" }, "Accept 接班");
      accept.addEventListener("click", () => acceptHandover(handover.id, accept));
      return el(
        "li",
        { class: "handover", dataset: { handoverId: handover.id } },
        el(
          "div",
          { class: "directive-meta" },
          el("span", { class: "directive-time" }, clock(handover.written_at)),
          el("span", {}, `${postName(handover.post)}: ${personName(handover.from_person)} → ${handover.to_person ? personName(handover.to_person) : "next on duty 下一班"}`),
        ),
        el("p", { class: "directive-text" }, handover.notes),
        handover.items.length
          ? el(
              "ul",
              { class: "item-list" },
              handover.items.map((item) =>
                el("li", { class: item.closed_at ? "is-closed" : "" }, item.text, linkText(item)),
              ),
            )
          : "",
        forMe && !mine ? el("div", { class: "directive-actions" }, accept) : "",
      );
    }),
  );
}

async function acceptHandover(handoverId, button) {
  button.disabled = true;
  try {
    await api(`/api/duty/handovers/${handoverId}/accept`, { method: "POST" });
    showMessage("Handover accepted 已接班", "info");
    await loadPending();
  } catch (error) {
    showMessage(errorText(error));
    button.disabled = false;
  }
}

async function submitHandover(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const button = form.querySelector("button[type=submit]");
  const to = $("handover-to").value;
  const body = {
    post: $("handover-post").value,
    notes: $("handover-notes").value.trim(),
    to_person_id: to ? Number(to) : null,
    items: $("handover-items")
      .value.split("\n")
      .map((line) => line.trim())
      .filter(Boolean)
      .map((text) => ({ text })),
    close_item_ids: [...form.querySelectorAll("input[name=close]:checked")].map((box) => Number(box.value)),
  };
  if (!body.notes) {
    showMessage("Write the handover notes 请填写交班记录");
    return;
  }
  button.disabled = true;
  try {
    await api("/api/duty/handovers", { method: "POST", body });
    form.reset();
    showMessage("Handed over 已交班: waiting for the next shift to accept", "info");
    await Promise.all([loadPending(), loadOpenItems()]);
  } catch (error) {
    showMessage(errorText(error));
  } finally {
    button.disabled = false;
  }
}

// ---- the duty log -----------------------------------------------------------------

async function loadLog(event) {
  event?.preventDefault();
  const params = new URLSearchParams({ limit: "500" });
  const day = $("log-day").value;
  const q = $("log-q").value.trim();
  const kind = $("log-kind").value;
  if (day) params.set("day", day);
  if (q) params.set("q", q);
  if (kind) params.set("kind", kind);
  try {
    const log = await api(`/api/duty/log?${params}`);
    renderLog(log.items);
  } catch (error) {
    showMessage(errorText(error));
  }
}

function renderLog(entries) {
  $("log-count").textContent = String(entries.length);
  $("log-empty").hidden = entries.length > 0;
  $("log-list").replaceChildren(
    ...entries.map((entry) => {
      const correct = el("button", { type: "button", class: "btn btn-small correct" }, "Correct 更正");
      correct.addEventListener("click", () => startCorrection(entry));
      return el(
        "li",
        {
          class: `log-entry${entry.corrected_by_id ? " is-corrected" : ""}`,
          dataset: { entryId: entry.id, kind: entry.kind },
        },
        el(
          "div",
          { class: "directive-meta" },
          el("span", { class: "directive-time" }, clock(entry.at)),
          el("span", { class: `state kind-${entry.kind}` }, KIND_LABELS[entry.kind] || entry.kind),
          el("span", {}, personName(entry.author)),
          entry.post ? el("span", {}, `@ ${entry.post}`) : "",
          el("span", { class: "log-id" }, `#${entry.id}`),
        ),
        el("p", { class: "directive-text log-text" }, entry.text),
        entry.corrects_id ? el("p", { class: "log-chain" }, `corrects #${entry.corrects_id} 更正`) : "",
        entry.corrected_by_id
          ? el("p", { class: "log-chain" }, `corrected by #${entry.corrected_by_id} 已更正`)
          : el("div", { class: "directive-actions" }, correct),
      );
    }),
  );
}

function startCorrection(entry) {
  page.correcting = entry;
  $("correcting").hidden = false;
  $("correcting-text").textContent = `Correcting #${entry.id} 更正记录: “${entry.text.slice(0, 60)}”`;
  $("log-entry-kind").value = entry.kind;
  $("log-entry-text").value = entry.text;
  $("log-entry-text").focus();
}

function stopCorrection() {
  page.correcting = null;
  $("correcting").hidden = true;
}

async function submitLogEntry(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const button = form.querySelector("button[type=submit]");
  const text = $("log-entry-text").value.trim();
  if (!text) {
    showMessage("Write the entry 请填写记录内容");
    return;
  }
  button.disabled = true;
  try {
    await api("/api/duty/log", {
      method: "POST",
      body: { kind: $("log-entry-kind").value, text, corrects_id: page.correcting?.id ?? null },
    });
    $("log-entry-text").value = "";
    stopCorrection();
    await loadLog();
  } catch (error) {
    showMessage(errorText(error));
  } finally {
    button.disabled = false;
  }
}

// ---- live updates -------------------------------------------------------------------

function refreshSoon() {
  clearTimeout(page.refreshTimer);
  page.refreshTimer = setTimeout(() => {
    Promise.all([loadBoard(), loadPending(), loadLog()]).catch((error) => showMessage(errorText(error)));
  }, REFRESH_DELAY_MS);
}

function onEvent(message) {
  if (message.type === "duty") refreshSoon();
  else if ((message.type === "alert" || message.type === "alert_update") && message.alert?.kind === "empty_seat") {
    refreshSoon();
  }
}

// ---- page ---------------------------------------------------------------------------

async function start(user) {
  page.user = user;
  showView(user);
  try {
    await loadBoard();
    $("log-day").value = page.board.day;
    await Promise.all([loadPeople(), loadPending(), loadLog()]);
  } catch (error) {
    showMessage(errorText(error));
  }
  page.events = connectEvents(onEvent, (status, info) => showConnectionStatus(status, info));
}

function stop() {
  page.events?.close();
  page.events = null;
  clearTimeout(page.refreshTimer);
  page.user = null;
  page.board = null;
  stopCorrection();
  for (const id of ["post-list", "my-posts", "pending-list", "log-list", "open-item-list"]) $(id).replaceChildren();
}

function init() {
  $("log-search").addEventListener("submit", loadLog);
  $("log-form").addEventListener("submit", submitLogEntry);
  $("correcting-cancel").addEventListener("click", stopCorrection);
  $("handover-form").addEventListener("submit", submitHandover);
  $("handover-post").addEventListener("change", loadOpenItems);
  bindSession({ start, stop, isActive: () => Boolean(page.user) });
}

init();
