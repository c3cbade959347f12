// WHIP publishing and WHEP viewing against the Zhihui media relay (docs/api.md, "Media relay").

const ICE_GATHERING_CAP_MS = 2000;
const DELETE_CAP_MS = 2000;

/** A signaling failure; `message` carries the relay's own text when it sent one. */
export class RtcError extends Error {
  constructor(message, status = 0) {
    super(message);
    this.name = "RtcError";
    this.status = status;
  }
}

// ---- pure helpers ---------------------------------------------------------

/** Resolve until ICE gathering is complete, or after `capMs`, whichever comes first. */
function waitForIceGathering(pc, capMs = ICE_GATHERING_CAP_MS) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", onChange);
      resolve();
    };
    const onChange = () => {
      if (pc.iceGatheringState === "complete") done();
    };
    const timer = setTimeout(done, capMs);
    pc.addEventListener("icegatheringstatechange", onChange);
  });
}

/** The relay's error text: a JSON `detail` when present, else the raw body, else the status. */
async function errorText(response) {
  const text = (await response.text().catch(() => "")).trim();
  if (text) {
    try {
      const body = JSON.parse(text);
      if (body && typeof body.detail === "string") return body.detail;
    } catch {
      // not JSON: use the text itself
    }
    return text;
  }
  return `${response.status} ${response.statusText}`.trim();
}

/** Offer, gather, POST to the WHIP/WHEP endpoint, apply the answer; returns the session URL. */
async function negotiate(pc, endpointUrl, grant, label) {
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  await waitForIceGathering(pc);

  let response;
  try {
    response = await fetch(endpointUrl, {
      method: "POST",
      headers: {
        "Content-Type": "application/sdp",
        Authorization: `Bearer ${grant}`,
      },
      body: pc.localDescription.sdp,
    });
  } catch (error) {
    throw new RtcError(`${label}: cannot reach the media relay (${error.message})`);
  }
  if (response.status !== 201) {
    throw new RtcError(`${label}: ${await errorText(response)}`, response.status);
  }

  const location = response.headers.get("Location");
  const sdp = await response.text();
  await pc.setRemoteDescription({ type: "answer", sdp });
  const endpoint = new URL(endpointUrl, window.location.href);
  return location ? new URL(location, endpoint).href : null;
}

/** The handle returned by publish() and view(): `stop()` ends the session and closes the pc. */
function session(pc, sessionUrl, grant) {
  let stopped = false;
  return {
    pc,
    sessionUrl,
    /**
     * DELETE the relay session, then close the connection; safe to call more than once.
     * The DELETE goes first: closing the pc first would let the relay end the session by itself
     * and answer our DELETE with 404. The pc is closed at the latest DELETE_CAP_MS later.
     * With `sessionEnded` (the relay already ended it, e.g. the stream went down) only the pc closes.
     */
    async stop({ sessionEnded = false } = {}) {
      if (stopped) return;
      stopped = true;
      if (!sessionUrl || sessionEnded) {
        pc.close();
        return;
      }
      const abort = new AbortController();
      const timer = setTimeout(() => abort.abort(), DELETE_CAP_MS);
      try {
        const response = await fetch(sessionUrl, {
          method: "DELETE",
          headers: { Authorization: `Bearer ${grant}` },
          keepalive: true, // lets the DELETE outlive a page being closed
          signal: abort.signal,
        });
        if (!response.ok && response.status !== 404) {
          console.warn("relay session DELETE failed:", await errorText(response));
        }
      } catch (error) {
        console.warn("relay session DELETE failed:", error.message);
      } finally {
        clearTimeout(timer);
        pc.close();
      }
    },
  };
}

// ---- public API -----------------------------------------------------------

/**
 * Publish `stream` to the relay over WHIP.
 * options.iceServers defaults to [] (the relay is reached directly).
 * Resolves to { pc, sessionUrl, stop() }; rejects with RtcError carrying the relay's text.
 */
export async function publish(stream, whipUrl, grant, { iceServers = [] } = {}) {
  const pc = new RTCPeerConnection({ iceServers });
  try {
    for (const track of stream.getTracks()) {
      pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
    }
    const sessionUrl = await negotiate(pc, whipUrl, grant, "Publish");
    return session(pc, sessionUrl, grant);
  } catch (error) {
    pc.close();
    throw error instanceof RtcError ? error : new RtcError(`Publish: ${error.message}`);
  }
}

/**
 * Play a relayed stream in `videoElement` over WHEP (recvonly video + audio).
 * The element is muted, autoplay and playsinline so browsers allow it to start by itself.
 * Resolves to { pc, sessionUrl, stop() }; rejects with RtcError carrying the relay's text.
 */
export async function view(videoElement, whepUrl, grant, { iceServers = [] } = {}) {
  const pc = new RTCPeerConnection({ iceServers });
  const remote = new MediaStream();

  videoElement.muted = true;
  videoElement.autoplay = true;
  videoElement.playsInline = true;
  videoElement.setAttribute("playsinline", "");
  videoElement.srcObject = remote;

  pc.addEventListener("track", (event) => {
    remote.addTrack(event.track);
    videoElement.play().catch(() => {
      // autoplay may still be refused (e.g. tab in background); the element keeps its source
    });
  });

  try {
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    const sessionUrl = await negotiate(pc, whepUrl, grant, "View");
    return session(pc, sessionUrl, grant);
  } catch (error) {
    pc.close();
    videoElement.srcObject = null;
    throw error instanceof RtcError ? error : new RtcError(`View: ${error.message}`);
  }
}
