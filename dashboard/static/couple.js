// The couple view: two soft shapes that swell and warm with each partner's activation,
// a few plain words for the state, and the pause-and-notice card when a prompt comes.
// Every text a person reads comes from the session (names) or the prompt events
// (title, text_a, text_b) and is set with textContent.

import { PARTNERS, SessionModel, clock, connectFeed, savingNotice } from "./feed.js";

const TRACE_S = 300; // seconds of activation shown in each soft trace
const WARM_AT_BPM = 30; // heart rate this far above baseline is the warmest colour
const RECENT_PROMPT_S = 90; // a late joiner still sees a prompt this recent

const model = new SessionModel();
const $ = (sel, root = document) => root.querySelector(sel);
const figures = Object.fromEntries(PARTNERS.map((p) => [p, $(`.partner[data-partner="${p}"]`)]));
const card = $("#prompt");
let shownPrompt = null; // the prompt event on the card, or null
let breakPrompt = null; // the flooding prompt whose break is still running

// -- what the state is, in a few words -----------------------------------------------

function activePatterns(tick) {
  return new Set((tick && tick.patterns ? tick.patterns : []).map((p) => p.pattern));
}

function breakLeft() {
  if (!breakPrompt) return 0;
  return breakPrompt.break_s - (model.now() - breakPrompt.t);
}

function moodWords() {
  if (model.idle || !model.session) return "waiting to begin";
  const state = model.state;
  if (state && (state.status === "finished" || state.status === "stopped")) return "the session has ended";
  if (state && state.status === "paused") return "paused";
  const tick = model.lastTick();
  if (!tick) return "settling in…";
  if (breakLeft() > 0 && !shownPrompt) return `on a break · ${clock(breakLeft())}`;
  const parts = PARTNERS.map((p) => tick.partners[p] || {});
  if (parts.some((x) => x.quality === "away" || x.quality === "none")) return "finding the straps…";
  if (!parts.every((x) => x.settled)) return "settling in…";
  const patterns = activePatterns(tick);
  if (patterns.has("flooding")) return "time for a break";
  if (patterns.has("escalation")) return "both hearts are quickening";
  if (patterns.has("divergence")) return "your hearts are moving differently";
  if (parts.every((x) => x.delta_bpm !== null && Math.abs(x.delta_bpm) <= 6)) return "both steady";
  return "here together";
}

// -- the two shapes --------------------------------------------------------------------

function warmth(row) {
  if (!row || !row.settled || row.delta_bpm === null) return 0;
  return Math.min(Math.max(row.delta_bpm / WARM_AT_BPM, 0), 1);
}

// The shapes' two colours (couple.css --calm and --warmth), mixed the same way for the trace.
const CALM_RGB = [143, 211, 201];
const WARM_RGB = [240, 180, 138];

function tone(warm, alpha) {
  const [r, g, b] = CALM_RGB.map((c, i) => Math.round(c + (WARM_RGB[i] - c) * warm));
  return `rgba(${r}, ${g}, ${b}, ${alpha})`;
}

function drawTrace(canvas, partner) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth;
  const h = canvas.clientHeight;
  if (!w || !h) return;
  if (canvas.width !== Math.round(w * ratio)) canvas.width = Math.round(w * ratio);
  if (canvas.height !== Math.round(h * ratio)) canvas.height = Math.round(h * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const now = model.now();
  const points = [];
  for (let i = model.ticks.length - 1; i >= 0; i--) {
    const tick = model.ticks[i];
    if (tick.t < now - TRACE_S) break;
    const row = tick.partners[partner];
    if (row && row.delta_bpm !== null && row.settled) points.push([tick.t, row.delta_bpm]);
  }
  if (points.length < 2) return;
  points.reverse();
  const y = (d) => h * 0.5 - (Math.max(-WARM_AT_BPM, Math.min(WARM_AT_BPM, d)) / WARM_AT_BPM) * h * 0.42;
  const x = (t) => w * (1 - (now - t) / TRACE_S);
  ctx.lineWidth = 3;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.strokeStyle = tone(warmth(model.lastTick().partners[partner]), 0.8);
  ctx.beginPath();
  ctx.moveTo(x(points[0][0]), y(points[0][1]));
  for (let i = 1; i < points.length; i++) {
    // Midpoint curves keep the line soft without inventing detail.
    const [t0, d0] = points[i - 1];
    const [t1, d1] = points[i];
    ctx.quadraticCurveTo(x(t0), y(d0), (x(t0) + x(t1)) / 2, (y(d0) + y(d1)) / 2);
  }
  ctx.stroke();
}

function renderPartners() {
  const tick = model.lastTick();
  for (const p of PARTNERS) {
    const fig = figures[p];
    $(".name", fig).textContent = model.name(p);
    const row = tick ? tick.partners[p] : null;
    const warm = warmth(row);
    fig.style.setProperty("--warm", warm.toFixed(3));
    $(".orb-wrap", fig).style.setProperty("--size", (0.86 + 0.24 * warm).toFixed(3));
    fig.classList.toggle("away", !!row && (row.quality === "away" || row.quality === "none"));
    fig.classList.toggle("faint", !!row && row.quality === "low");
    fig.classList.toggle("unsettled", !row || !row.settled);
    $(".note", fig).textContent = row && row.quality === "away" ? "looking for the strap…" : "";
    drawTrace($(".trace", fig), p);
  }
}

// -- the prompt card -------------------------------------------------------------------

function ackKey() {
  return `coreg-ack-${model.session ? model.session.id : ""}`;
}

function acknowledged() {
  try {
    return new Set(JSON.parse(sessionStorage.getItem(ackKey()) || "[]"));
  } catch (err) {
    return new Set();
  }
}

function remember(promptT) {
  const seen = acknowledged();
  seen.add(promptT);
  try {
    sessionStorage.setItem(ackKey(), JSON.stringify([...seen]));
  } catch (err) {
    /* private mode: the card may come back after a reload, nothing worse */
  }
}

function showPrompt(event) {
  shownPrompt = event;
  $(".title", card).textContent = event.title || "A moment to notice";
  for (const p of PARTNERS) {
    const side = $(`.side[data-partner="${p}"]`, card);
    $(".who", side).textContent = model.name(p);
    $(".text", side).textContent = event[`text_${p}`] || "";
  }
  const isBreak = typeof event.break_s === "number" && event.break_s > 0;
  if (isBreak) breakPrompt = event;
  $(".break", card).hidden = !isBreak;
  $("#prompt-ack").textContent = isBreak ? "Thanks" : "We paused";
  card.hidden = false;
  renderCountdown();
  $("#prompt-ack").focus();
}

function renderCountdown() {
  if (!shownPrompt || card.hidden || !breakPrompt) return;
  $(".countdown", card).textContent = clock(Math.max(breakLeft(), 0));
}

function acknowledge() {
  if (!shownPrompt) return;
  remember(shownPrompt.t);
  feed.send({ type: "ack", prompt_t: shownPrompt.t });
  shownPrompt = null;
  card.hidden = true;
  renderMood();
}

/** After a (re)connect: show the latest prompt again if it is recent and not yet acknowledged. */
function restorePrompt() {
  card.hidden = true;
  shownPrompt = null;
  breakPrompt = null;
  const prompts = model.events.filter((e) => e.kind === "prompt");
  if (!prompts.length) return;
  const last = prompts[prompts.length - 1];
  const age = model.now() - last.t;
  if (typeof last.break_s === "number" && age < last.break_s) breakPrompt = last;
  if (age <= Math.max(RECENT_PROMPT_S, breakPrompt === last ? last.break_s : 0) && !acknowledged().has(last.t)) {
    showPrompt(last);
  }
}

// -- wiring ------------------------------------------------------------------------------

function renderMood() {
  $("#mood").textContent = moodWords();
}

function renderSaving() {
  const text = savingNotice(model.storage);
  $("#saving").textContent = text;
  $("#saving").hidden = !text;
}

function onMessage(msg) {
  const change = model.apply(msg);
  if (change === "reset") {
    restorePrompt();
  } else if (change === "event" && msg.event.kind === "prompt") {
    showPrompt(msg.event);
  }
  if (change) {
    renderPartners();
    renderMood();
    renderCountdown();
    renderSaving();
  }
}

function onStatus(status) {
  const link = $("#link");
  link.hidden = status === "open";
  link.textContent = status === "unauthorized" ? "this screen needs the address with its access code" : "reconnecting…";
}

$("#prompt-ack").addEventListener("click", acknowledge);
window.addEventListener("resize", renderPartners);
const feed = connectFeed({ onMessage, onStatus, sessionId: new URLSearchParams(location.search).get("session") });
renderPartners();
