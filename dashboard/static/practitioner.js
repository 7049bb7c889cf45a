// The practitioner view: both partners live (numbers, charts, signal quality and
// connection), the dyad's linkage and patterns, annotations, replay controls and the
// session list. Anything typed or recorded is shown with textContent, never as HTML.

import { Charts } from "./charts.js";
import { PARTNERS, SessionModel, clock, connectFeed, el, savingNotice } from "./feed.js";

const QUALITY_WORDS = { ok: "signal good", low: "signal noisy", away: "strap away", none: "no signal yet" };
const model = new SessionModel();
const $ = (sel, root = document) => root.querySelector(sel);
const cards = Object.fromEntries(PARTNERS.map((p) => [p, $(`.partner[data-partner="${p}"]`)]));
const charts = new Charts({ hr: $("#chart-hr"), act: $("#chart-act"), link: $("#chart-link") });
let pinned = new URLSearchParams(location.search).get("session");
let seeking = false; // the slider is being dragged: do not move it under the hand

// -- talking to the API -------------------------------------------------------------------

function say(text) {
  $("#api-message").textContent = text || "";
}

function problem(detail) {
  if (Array.isArray(detail)) return detail.map((d) => d.msg || String(d)).join("; ");
  return typeof detail === "string" ? detail : "something went wrong";
}

async function api(method, path, body) {
  const init = { method, headers: {}, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    say("the dashboard cannot be reached");
    throw err;
  }
  if (response.status === 204) return null;
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    say(problem(data.detail));
    throw new Error(problem(data.detail));
  }
  say("");
  return data;
}

function sessionId() {
  return model.session ? model.session.id : null;
}

// -- partners, linkage, patterns ------------------------------------------------------

function num(value, digits, unit = "") {
  return value === null || value === undefined ? "–" : `${value.toFixed(digits)}${unit}`;
}

function signed(value, digits, unit = "") {
  return value === null || value === undefined ? "–" : `${value > 0 ? "+" : ""}${value.toFixed(digits)}${unit}`;
}

/** Connection per partner: the last connected/disconnected event, else the tick's quality. */
function connection(partner, row) {
  let last = null;
  for (const e of model.events) if (e.partner === partner && (e.kind === "connected" || e.kind === "disconnected")) last = e.kind;
  if (row && row.quality === "away") return "disconnected";
  return last || (row && row.quality !== "none" ? "connected" : "waiting");
}

function renderPartners() {
  const tick = model.lastTick();
  const baselines = model.baselines();
  for (const p of PARTNERS) {
    const card = cards[p];
    const row = tick ? tick.partners[p] || {} : {};
    $(".name", card).textContent = model.name(p);
    $(".hr", card).textContent = num(row.hr_bpm, 0);
    $(".delta", card).textContent = signed(row.delta_bpm, 1, " bpm");
    $(".act", card).textContent = signed(row.activation_sd, 2, " SD");
    $(".vagal", card).textContent = signed(row.vagal_index, 2);
    $(".rmssd", card).textContent = num(row.rmssd_ms, 0, " ms");
    const quality = row.quality || "none";
    $(".dot", card).className = `dot ${quality}`;
    $(".conn-word", card).textContent = `${connection(p, row)} · ${QUALITY_WORDS[quality] || quality}`;
    const base = baselines[p];
    $(".baseline", card).textContent = base
      ? `baseline ${base.hr_mean_bpm.toFixed(1)} ± ${base.hr_sd_bpm.toFixed(1)} bpm · ln RMSSD ${base.ln_rmssd_mean.toFixed(2)}`
      : "baseline: settling…";
  }
  const linkage = tick ? tick.linkage || {} : {};
  $("#link-r").textContent = signed(linkage.r, 2);
  $("#link-lag").textContent = `lag ${num(linkage.lag_s, 1, " s")}`;
  const patterns = tick ? tick.patterns || [] : [];
  $("#patterns").textContent = patterns.length
    ? patterns.map((x) => `${x.pattern}${x.partner ? " (" + model.name(x.partner) + ")" : ""} since ${clock(x.start_t)}`).join(", ")
    : "no pattern";
}

function renderHeader() {
  const s = model.session;
  $("#session-title").textContent = s ? s.label || `${s.kind} session ${s.id}` : "no session running";
  const state = model.state;
  $("#session-status").textContent = s
    ? [s.kind, state ? state.status : s.status, clock(model.now())].filter(Boolean).join(" · ")
    : "";
  $("#follow-current").hidden = !pinned;
}

// -- replay controls -------------------------------------------------------------------

function renderReplay() {
  const state = model.state;
  const box = $("#replay");
  box.hidden = !(state && state.can_seek);
  if (box.hidden) return;
  const duration = state.duration_s || 0;
  const position = Math.min(model.now(), duration);
  const slider = $("#seek");
  slider.max = String(Math.max(Math.ceil(duration), 1));
  if (!seeking) slider.value = String(Math.floor(position));
  $("#position").textContent = `${clock(position)} / ${clock(duration)}`;
  $("#play").textContent = state.status === "running" ? "Pause" : "Play";
  const speed = String(state.speed);
  if ([...$("#speed").options].some((o) => o.value === speed)) $("#speed").value = speed;
}

async function control(action, value) {
  const id = sessionId();
  if (!id) return;
  const state = await api("POST", `/api/sessions/${encodeURIComponent(id)}/control`, { action, value });
  model.state = state;
  renderReplay();
}

// -- the event log --------------------------------------------------------------------

function describe(e) {
  const who = e.partner ? model.name(e.partner) : "";
  switch (e.kind) {
    case "prompt":
      return `${e.pattern || ""}${who ? " · " + who : ""} — ${e.title || ""}`;
    case "pattern_start":
    case "pattern_end":
      return `${e.pattern || ""}${who ? " · " + who : " · both"}`;
    case "settled":
      return e.baseline ? `${who}: baseline ${e.baseline.hr_mean_bpm.toFixed(1)} bpm` : who;
    case "annotation":
      return e.author ? `${e.text} — ${e.author}` : e.text;
    case "recovered":
      return `after ${num(e.recovery_s, 0, " s")} (${e.pattern || "prompt"})`;
    default:
      return who;
  }
}

function logItem(e) {
  return el("li", { cls: e.kind }, [
    el("span", { cls: "t", text: clock(e.t) }),
    el("span", { cls: "kind", text: e.kind.replace("_", " ") }),
    el("span", { cls: "what", text: describe(e) }),
  ]);
}

function renderLog() {
  const list = $("#event-log");
  list.replaceChildren(...model.events.slice().reverse().map(logItem));
}

// -- sessions ---------------------------------------------------------------------------

function sessionItem(s) {
  const id = encodeURIComponent(s.id);
  const buttons = [];
  const button = (text, action) => {
    const b = el("button", { text, attrs: { type: "button" } });
    b.addEventListener("click", () => action().catch(() => {}));
    buttons.push(b);
  };
  if (s.running) {
    button("Watch", async () => watch(s.id));
    button("Stop", async () => {
      await api("POST", `/api/sessions/${id}/stop`);
      await refreshSessions();
    });
  } else {
    button("Replay", async () => {
      const started = await api("POST", "/api/sessions", { kind: "replay", source: s.id, speed: Number($("#speed").value) || 1 });
      if (pinned) watch(started.id);
      await refreshSessions();
    });
    button("Delete", async () => {
      if (!window.confirm("Delete this session and its recording from this computer?")) return;
      await api("DELETE", `/api/sessions/${id}`);
      await refreshSessions();
    });
  }
  const link = el("a", { text: "Export", attrs: { href: `/api/sessions/${id}/export`, download: "" } });
  button("Report", async () => {
    window.open(`/api/sessions/${id}/report`, "_blank", "noopener");
  });
  const meta = [s.kind, s.running ? s.runner_status || "running" : s.status, (s.started_at || "").replace("T", " ").replace("Z", ""), clock(s.duration_s || 0)];
  return el("li", { cls: `session-item${s.id === sessionId() ? " current" : ""}` }, [
    el("div", { cls: "label", text: s.label || s.id }),
    el("div", { cls: "meta", text: meta.filter(Boolean).join(" · ") }),
    el("div", { cls: "row" }, [...buttons, link]),
  ]);
}

async function refreshSessions() {
  const sessions = await api("GET", "/api/sessions");
  $("#session-list").replaceChildren(...sessions.map(sessionItem));
}

/** The replay form's suggestions: the recordings in the data folder. */
async function refreshRecordings() {
  const recordings = await api("GET", "/api/recordings");
  $("#recording-names").replaceChildren(
    ...recordings.map((r) => {
      const option = document.createElement("option");
      option.value = r.name;
      return option;
    }),
  );
}

function watch(id) {
  pinned = id;
  const url = new URL(location.href);
  if (id) url.searchParams.set("session", id);
  else url.searchParams.delete("session");
  history.replaceState(null, "", url);
  feed.follow(id);
}

// -- wiring -----------------------------------------------------------------------------

function onMessage(msg) {
  const change = model.apply(msg);
  if (!change) return;
  if (change === "reset") {
    charts.rebuild(model);
    renderLog();
    refreshSessions().catch(() => {});
  } else if (change === "tick") {
    charts.push(msg);
    charts.update(model);
  } else if (change === "event") {
    $("#event-log").prepend(logItem(msg.event));
    charts.update(model);
  } else if (change === "state") {
    refreshSessions().catch(() => {});
  }
  renderHeader();
  renderPartners();
  renderReplay();
  renderSaving();
}

function renderSaving() {
  const text = savingNotice(model.storage, { detail: true });
  $("#saving").textContent = text;
  $("#saving").hidden = !text;
}

function onStatus(status) {
  const link = $("#link");
  link.classList.toggle("open", status === "open");
  link.textContent =
    status === "open" ? "connected" : status === "unauthorized" ? "access token needed (use the printed address)" : "reconnecting…";
}

async function annotate(text, author) {
  const id = sessionId();
  if (!id) {
    say("start or watch a session to mark moments");
    return;
  }
  await api("POST", `/api/sessions/${encodeURIComponent(id)}/annotations`, { text, author });
}

$("#annotate-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = $("#note-text").value.trim();
  if (!text) return;
  annotate(text, $("#note-author").value.trim())
    .then(() => {
      $("#note-text").value = "";
    })
    .catch(() => {});
});

for (const b of document.querySelectorAll("[data-quick]")) {
  b.addEventListener("click", () => annotate(b.dataset.quick, $("#note-author").value.trim()).catch(() => {}));
}

$("#start-demo").addEventListener("click", () => {
  api("POST", "/api/sessions", { kind: "demo", speed: 1 })
    .then((s) => (pinned ? watch(s.id) : refreshSessions()))
    .catch(() => {});
});

$("#replay-source").addEventListener("focus", () => refreshRecordings().catch(() => {}));
refreshRecordings().catch(() => {});

$("#replay-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const source = $("#replay-source").value.trim();
  api("POST", "/api/sessions", { kind: "replay", source, speed: Number($("#speed").value) || 1 })
    .then((s) => (pinned ? watch(s.id) : refreshSessions()))
    .catch(() => {});
});

$("#live-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const form = new FormData(ev.target);
  const body = { kind: "live" };
  for (const key of ["addr_a", "addr_b", "name_a", "name_b", "label"]) {
    const value = String(form.get(key) || "").trim();
    if (value) body[key] = value;
  }
  say("connecting to the straps…");
  api("POST", "/api/sessions", body)
    .then((s) => (pinned ? watch(s.id) : refreshSessions()))
    .catch(() => {});
});

$("#follow-current").addEventListener("click", () => watch(null));
$("#play").addEventListener("click", () => {
  const playing = model.state && model.state.status === "running";
  control(playing ? "pause" : "play").catch(() => {});
});
$("#seek").addEventListener("input", () => {
  seeking = true;
  $("#position").textContent = `${clock(Number($("#seek").value))} / ${clock(model.state ? model.state.duration_s : 0)}`;
});
$("#seek").addEventListener("change", () => {
  control("seek", Number($("#seek").value))
    .catch(() => {})
    .finally(() => {
      seeking = false;
    });
});
$("#speed").addEventListener("change", () => control("speed", Number($("#speed").value)).catch(() => {}));

const feed = connectFeed({ onMessage, onStatus, sessionId: pinned });
charts.rebuild(model);
renderHeader();
refreshSessions().catch(() => {});
setInterval(() => refreshSessions().catch(() => {}), 15000);
