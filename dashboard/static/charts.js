// The practitioner view's charts (uPlot, vendored): heart rate, activation and linkage
// against session time, with pattern bands, prompt and annotation lines and, on the
// heart-rate chart, each partner's baseline once settled. Cursors are synchronised.

import { clock } from "./feed.js";

const COLORS = { a: "#5fb8b0", b: "#b39ddb", r: "#e3e7ee" };
const INK_SOFT = "#9aa4b8";
const GRID = "rgba(154, 164, 184, 0.12)";
const BANDS = {
  divergence: "rgba(224, 194, 122, 0.22)",
  escalation: "rgba(224, 160, 122, 0.18)",
  flooding: "rgba(200, 140, 170, 0.22)",
};
const CHART_HEIGHT = 180;

function axes(yLabel) {
  const common = { stroke: INK_SOFT, grid: { stroke: GRID, width: 1 }, ticks: { stroke: GRID, width: 1 } };
  return [
    { ...common, values: (u, splits) => splits.map((v) => clock(v)) },
    { ...common, label: yLabel, size: 56 },
  ];
}

/** Holds the three charts and redraws them at most once per animation frame. */
export class Charts {
  constructor(containers) {
    this.containers = containers; // {hr, act, link}: elements
    this.plots = {};
    this.overlay = { spans: [], marks: [], baselines: {}, now: 0 };
    this.pending = false;
    this.data = null;
    window.addEventListener("resize", () => this.resize());
  }

  /** Build the charts anew (names appear in the legends) from the model's ticks. */
  rebuild(model) {
    for (const plot of Object.values(this.plots)) plot.destroy();
    const name = (p) => model.name(p);
    const overlays = (u) => this.drawOverlays(u);
    const make = (el, title, yLabel, series, range) =>
      new uPlot(
        {
          title,
          width: el.clientWidth || 600,
          height: CHART_HEIGHT,
          scales: { x: { time: false }, y: range ? { range } : { auto: true } },
          series: [{ label: "time", value: (u, v) => (v == null ? "–" : clock(v)) }, ...series],
          axes: axes(yLabel),
          cursor: { sync: { key: "coreg" } },
          hooks: { draw: [overlays] },
        },
        [[], ...series.map(() => [])],
        el,
      );
    const line = (label, color, digits) => ({
      label,
      stroke: color,
      width: 2,
      spanGaps: false,
      value: (u, v) => (v == null ? "–" : v.toFixed(digits)),
    });
    this.plots = {
      hr: make(this.containers.hr, "Heart rate", "bpm", [line(name("a"), COLORS.a, 1), line(name("b"), COLORS.b, 1)]),
      act: make(this.containers.act, "Activation (baseline SDs)", "SD", [
        line(name("a"), COLORS.a, 2),
        line(name("b"), COLORS.b, 2),
      ]),
      link: make(this.containers.link, "Linkage r (in-phase > 0 > anti-phase)", "r", [line("r", COLORS.r, 2)], [-1, 1]),
    };
    this.data = { t: [], hrA: [], hrB: [], actA: [], actB: [], r: [] };
    for (const tick of model.ticks) this.push(tick);
    this.update(model);
  }

  /** Append one tick's values (null where unknown, which uPlot draws as a gap). */
  push(tick) {
    const d = this.data;
    if (!d) return;
    const a = tick.partners.a || {};
    const b = tick.partners.b || {};
    d.t.push(tick.t);
    d.hrA.push(a.hr_bpm ?? null);
    d.hrB.push(b.hr_bpm ?? null);
    d.actA.push(a.activation_sd ?? null);
    d.actB.push(b.activation_sd ?? null);
    d.r.push(tick.linkage ? tick.linkage.r ?? null : null);
  }

  /** Take the overlays from the model and schedule a redraw. */
  update(model) {
    this.overlay = {
      spans: model.patternSpans(),
      marks: model.events.filter((e) => e.kind === "prompt" || e.kind === "annotation"),
      baselines: model.baselines(),
      now: model.now(),
    };
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.draw();
    });
  }

  draw() {
    const d = this.data;
    if (!d || !this.plots.hr) return;
    this.plots.hr.setData([d.t, d.hrA, d.hrB]);
    this.plots.act.setData([d.t, d.actA, d.actB]);
    this.plots.link.setData([d.t, d.r]);
  }

  resize() {
    for (const [key, plot] of Object.entries(this.plots)) {
      const width = this.containers[key].clientWidth;
      if (width) plot.setSize({ width, height: CHART_HEIGHT });
    }
  }

  /** Pattern bands and event lines on every chart; baselines on the heart-rate chart. */
  drawOverlays(u) {
    const { ctx, bbox } = u;
    const { spans, marks, baselines, now } = this.overlay;
    const x = (t) => u.valToPos(t, "x", true);
    const left = bbox.left;
    const right = bbox.left + bbox.width;
    ctx.save();
    ctx.beginPath();
    ctx.rect(bbox.left, bbox.top, bbox.width, bbox.height);
    ctx.clip();
    for (const span of spans) {
      const x0 = Math.max(x(span.start), left);
      const x1 = Math.min(x(span.end === null ? now : span.end), right);
      if (x1 <= x0) continue;
      ctx.fillStyle = BANDS[span.pattern] || BANDS.divergence;
      ctx.fillRect(x0, bbox.top, x1 - x0, bbox.height);
    }
    const ratio = window.devicePixelRatio || 1;
    for (const mark of marks) {
      const px = x(mark.t);
      if (px < left || px > right) continue;
      ctx.strokeStyle = mark.kind === "prompt" ? "#e0c27a" : INK_SOFT;
      ctx.lineWidth = (mark.kind === "prompt" ? 2 : 1) * ratio;
      ctx.setLineDash(mark.kind === "prompt" ? [] : [4 * ratio, 4 * ratio]);
      ctx.beginPath();
      ctx.moveTo(px, bbox.top);
      ctx.lineTo(px, bbox.top + bbox.height);
      ctx.stroke();
    }
    if (u === this.plots.hr) {
      for (const [partner, base] of Object.entries(baselines)) {
        if (typeof base.hr_mean_bpm !== "number") continue;
        const py = u.valToPos(base.hr_mean_bpm, "y", true);
        ctx.strokeStyle = COLORS[partner] || INK_SOFT;
        ctx.globalAlpha = 0.6;
        ctx.lineWidth = ratio;
        ctx.setLineDash([6 * ratio, 6 * ratio]);
        ctx.beginPath();
        ctx.moveTo(left, py);
        ctx.lineTo(right, py);
        ctx.stroke();
        ctx.globalAlpha = 1;
      }
    }
    ctx.restore();
  }
}
