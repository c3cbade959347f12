// Directive records as the API sends them (docs/api.md, `directive`), and how copies combine.

/** A target's state; it only ever moves forward: sent -> delivered -> acknowledged. */
export const TargetState = Object.freeze({
  SENT: "sent",
  DELIVERED: "delivered",
  ACKNOWLEDGED: "acknowledged",
});

const RANK = { [TargetState.SENT]: 0, [TargetState.DELIVERED]: 1, [TargetState.ACKNOWLEDGED]: 2 };

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
