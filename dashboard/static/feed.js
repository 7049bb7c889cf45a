// What both views share: the WebSocket to /ws (reconnecting by itself) and the
// session model built from its messages (snapshot, resync, tick, event, state, storage,
// idle).
// The access token, when there is one, travels in an HttpOnly cookie the server set
// on page load, so this script never sees it.

export const PARTNERS = ["a", "b"];

/** The session as a viewer knows it: summary, ticks and events so far, replay state,
 * and whether it is being saved (storage: {state: "ok"} or {state: "paused", reason}). */
export class SessionModel {
  constructor() {
    this.reset(null);
  }

  reset(snapshot) {
    this.session = snapshot ? snapshot.session || null : null;
    this.ticks = snapshot ? (snapshot.ticks || []).slice() : [];
    this.events = snapshot ? (snapshot.events || []).slice() : [];
    this.state = snapshot ? snapshot.replay || null : null;
    this.storage = snapshot && snapshot.storage ? snapshot.storage : { state: "ok" };
    this.idle = !snapshot;
  }

  /** Apply one message; returns what changed: "reset", "tick", "event", "state", "storage" or null. */
  apply(msg) {
    switch (msg.type) {
      case "snapshot":
      case "resync":
        this.reset(msg);
        return "reset";
      case "idle":
        this.reset(null);
        return "reset";
      case "tick": {
        const last = this.lastTick();
        if (last && msg.t <= last.t) return null; // already shown
        this.ticks.push(msg);
        return "tick";
      }
      case "event":
        this.events.push(msg.event);
        return "event";
      case "state": {
        const { type, ...state } = msg;
        this.state = state;
        return "state";
      }
      case "storage": {
        const { type, ...storage } = msg;
        this.storage = storage;
        return "storage";
      }
      default:
        return null;
    }
  }

  lastTick() {
    return this.ticks.length ? this.ticks[this.ticks.length - 1] : null;
  }

  /** Seconds of session time shown so far (the last tick, or the replay position). */
  now() {
    const last = this.lastTick();
    if (last) return last.t;
    return this.state && typeof this.state.position_s === "number" ? this.state.position_s : 0;
  }

  /** A partner's name as the session header gives it, or a plain stand-in. */
  name(partner) {
    const p = this.session && this.session.partners ? this.session.partners[partner] : null;
    return p && p.name ? p.name : partner === "a" ? "Partner A" : "Partner B";
  }

  /** The latest baseline of each partner, from their "settled" events. */
  baselines() {
    const out = {};
    for (const e of this.events) if (e.kind === "settled" && e.partner && e.baseline) out[e.partner] = e.baseline;
    return out;
  }

  /** Pattern spans {pattern, partner, start, end (null while open)} from the events. */
  patternSpans() {
    const spans = [];
    const open = new Map();
    for (const e of this.events) {
      const key = `${e.pattern}|${e.partner}`;
      if (e.kind === "pattern_start") {
        open.set(key, { pattern: e.pattern, partner: e.partner, start: e.t, end: null });
      } else if (e.kind === "pattern_end" && open.has(key)) {
        spans.push({ ...open.get(key), end: e.t });
        open.delete(key);
      }
    }
    return spans.concat([...open.values()]);
  }

  running() {
    return !!this.state && (this.state.status === "running" || this.state.status === "paused");
  }
}

/** The WebSocket URL: same origin; `?session=` and `?token=` of the page carried over. */
function socketUrl(sessionId) {
  const page = new URLSearchParams(location.search);
  const query = new URLSearchParams();
  if (sessionId) query.set("session", sessionId);
  if (page.get("token")) query.set("token", page.get("token"));
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const qs = query.toString();
  return `${scheme}//${location.host}/ws${qs ? "?" + qs : ""}`;
}

/**
 * Keep a WebSocket open to the dashboard and hand every parsed message to onMessage.
 * onStatus gets "connecting", "open", "closed" or "unauthorized". Returns
 * {send(obj), follow(sessionId or null)}.
 */
export function connectFeed({ onMessage, onStatus = () => {}, sessionId = null }) {
  let socket = null;
  let delayMs = 1000;
  let target = sessionId;
  let timer = null;

  function open() {
    clearTimeout(timer);
    onStatus("connecting");
    const ws = new WebSocket(socketUrl(target));
    socket = ws;
    ws.addEventListener("open", () => {
      delayMs = 1000;
      onStatus("open");
    });
    ws.addEventListener("message", (ev) => {
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch (err) {
        return;
      }
      if (msg && typeof msg === "object") onMessage(msg);
    });
    ws.addEventListener("close", (ev) => {
      if (socket !== ws) return; // replaced on purpose
      onStatus(ev.code === 4401 ? "unauthorized" : "closed");
      timer = setTimeout(open, delayMs);
      delayMs = Math.min(delayMs * 2, 10000);
    });
  }

  open();
  return {
    send(obj) {
      if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(obj));
    },
    follow(id) {
      target = id || null;
      const old = socket;
      socket = null;
      if (old) old.close();
      open();
    },
  };
}

/**
 * The calm words shown while the session cannot be saved, or "" while saving works.
 * With detail (the practitioner), they say why and whether memory for unsaved data ran out.
 */
export function savingNotice(storage, { detail = false } = {}) {
  if (!storage || storage.state !== "paused") return "";
  if (!detail) return "Saving is paused for now. The session goes on and will be saved when it can.";
  const why =
    storage.reason === "full" ? "the disk is full" : storage.reason === "busy" ? "the database is busy" : "the disk cannot be written to";
  let text = `Saving is paused: ${why}. The session goes on and will be saved when it can.`;
  if (storage.dropped_rows) text += " The memory kept for unsaved data is full, so the newest records are not kept.";
  return text;
}

/** Seconds as m:ss (or h:mm:ss). */
export function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds || 0));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

/** A new element with text set as text (never parsed as HTML). */
export function el(tag, { cls = "", text = null, attrs = {} } = {}, children = []) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== null && text !== undefined) node.textContent = String(text);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const child of children) if (child) node.append(child);
  return node;
}
