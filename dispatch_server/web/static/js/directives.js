// Directive records as the API sends them (docs/api.md, `directive`), and how copies combine.

/** A target's state; it only ever moves forward: sent -> delivered -> acknowledged -> done. */
export const TargetState = Object.freeze({
  SENT: "sent",
  DELIVERED: "delivered",
  ACKNOWLEDGED: "acknowledged",
  DONE: "done",
});

const RANK = {
  [TargetState.SENT]: 0,
  [TargetState.DELIVERED]: 1,
  [TargetState.ACKNOWLEDGED]: 2,
  [TargetState.DONE]: 3,
};

/** Whether a target has acknowledged (and perhaps done) it. */
export function isAcknowledged(state) {
  return rank(state) >= RANK[TargetState.ACKNOWLEDGED];
}

/**
 * Whether a target is late now: not acknowledged by the deadline, or acknowledged but not done by
 * the completion deadline (`complete_by`, optional). The same rule as the server's `overdue`.
 */
export function isOverdue(directive, state, now = Date.now()) {
  if (!isAcknowledged(state)) return Boolean(directive.deadline) && now >= new Date(directive.deadline).getTime();
  if (state === TargetState.ACKNOWLEDGED && directive.complete_by) {
    return now >= new Date(directive.complete_by).getTime();
  }
  return false;
}

/** A line saying whom it went to beyond the listed people, and from where: "" for plain ones. */
export function describeScope(directive) {
  const parts = [];
  if (directive.origin === "upper_court") parts.push("from the upper court 上级法院");
  if (directive.scope === "unit" && directive.unit) parts.push(`to unit ${directive.unit.name}`);
  if (directive.scope === "incident" && directive.incident_id) parts.push(`to everyone on incident #${directive.incident_id}`);
  return parts.join(" · ");
}

function rank(state) {
  return RANK[state] ?? -1;
}

/**
 * Combine a newly received copy of a directive with the one already shown.
 * Copies can arrive out of order (the POST answer after a websocket update, a GET answer taken
 * before an acknowledgement), so each target keeps whichever state is further along.
 */
export function mergeDirective(previous, incoming) {
  if (!previous) return incoming;
  const known = new Map((previous.targets || []).map((target) => [target.person && target.person.id, target]));
  const targets = (incoming.targets || []).map((target) => {
    const old = known.get(target.person && target.person.id);
    return old && rank(old.state) > rank(target.state) ? old : target;
  });
  return { ...incoming, targets };
}

/** The target entry for `personId`, or null. */
export function targetFor(directive, personId) {
  return (directive.targets || []).find((target) => target.person && target.person.id === personId) || null;
}

/** Newest first (ids break ties). */
export function newestFirst(a, b) {
  return new Date(b.created_at) - new Date(a.created_at) || b.id - a.id;
}
