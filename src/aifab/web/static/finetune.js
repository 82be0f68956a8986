// Fine-tuning (admin): datasets and their versions; jobs with live events, the loss chart and the
// evaluation gate's verdict.

import { api } from "./api.js";
import { lineChart } from "./charts.js";
import { gateText } from "./models.js";
import { attempt, h, poll, table, when } from "./ui.js";

const ACTIVE = new Set(["validating_files", "queued", "running"]);
const enc = encodeURIComponent;

/** Every event of a job, oldest first (the API lists them newest first, 100 a page). */
async function allEvents(id) {
  const out = [];
  let after = null;
  for (;;) {
    const page = (await api(`/v1/fine_tuning/jobs/${enc(id)}/events?limit=100${after ? `&after=${enc(after)}` : ""}`)).data;
    out.push(...page);
    if (page.length < 100) return out.reverse();
    after = page[page.length - 1].id;
  }
}

export async function render(view) {
  const stops = new Set();
  const datasets = h("div");
  const jobs = h("div");
  const detail = h("section", { "aria-label": "Job", class: "job" });
  let openJob = null;

  async function drawDatasets() {
    const list = (await api("/v1/admin/datasets")).data;
    datasets.replaceChildren(table(["Dataset", "Kind", "Train", "Eval", "Source", "Created"], list.map((d) => h("tr", {},
      h("td", {}, `${d.name}@v${d.version}`), h("td", {}, d.kind), h("td", {}, d.counts ? d.counts.train ?? "" : ""),
      h("td", {}, d.counts ? d.counts.eval ?? "" : ""), h("td", {}, d.source ? d.source.kind || d.source.from || "" : ""),
      h("td", {}, when(d.created)))), "Datasets (every version)"));
  }

  async function drawJobs() {
    const list = (await api("/v1/fine_tuning/jobs?limit=50")).data;
    jobs.replaceChildren(table(["Job", "Base", "Status", "New model", "Gate", "Created"], list.map((j) => h("tr", { dataset: { job: j.id } },
      h("td", {}, h("button", { type: "button", class: "link", onclick: () => show(j.id) }, j.id)),
      h("td", {}, j.model), h("td", {}, j.status), h("td", {}, j.fine_tuned_model || "—"),
      h("td", {}, j.aifab && j.aifab.gate ? gateText(j.aifab.gate) : "—"), h("td", {}, when(j.created_at)))), "Jobs"));
    return list;
  }

  function show(id) {
    for (const stop of stops) stop();
    stops.clear();
    openJob = id;
    const status = h("p", { role: "status" });
    const chart = h("div", { class: "loss" });
    const events = h("ol", { class: "events", reversed: true });
    const cancel = h("button", { type: "button", class: "danger", hidden: true, onclick: () => attempt(async () => {
      await api(`/v1/fine_tuning/jobs/${enc(id)}/cancel`, { method: "POST" });
      await drawJobs();
    }) }, "Cancel job");
    const gate = h("p");
    detail.replaceChildren(h("h2", {}, `Job ${id}`), status, cancel, gate, h("h3", {}, "Training loss"), chart,
      h("h3", {}, "Events"), events);
    const seen = new Map();
    let first = true;
    const stop = poll(async () => {
      if (openJob !== id) return true;
      const job = await api(`/v1/fine_tuning/jobs/${enc(id)}`);
      const fresh = first ? await allEvents(id) : (await api(`/v1/fine_tuning/jobs/${enc(id)}/events?limit=100`)).data.reverse();
      first = false;
      for (const e of fresh) seen.set(e.id, e);
      const ordered = [...seen.values()].sort((a, b) => a.created_at - b.created_at);
      const points = ordered.filter((e) => e.type === "metrics" && e.data && Number.isFinite(e.data.train_loss))
        .map((e) => ({ x: e.data.step, y: e.data.train_loss })).sort((a, b) => a.x - b.x);
      chart.replaceChildren(points.length ? lineChart(points, `Training loss by step, ${points.length} steps`)
        : h("p", { class: "muted" }, "No training steps yet."));
      events.replaceChildren(...ordered.filter((e) => e.type !== "metrics").reverse().map((e) =>
        h("li", { class: e.level }, h("time", {}, when(e.created_at)), " ", e.message)));
      status.textContent = `${job.status}${job.fine_tuned_model ? ` → ${job.fine_tuned_model}` : ""}${job.error ? `: ${job.error.message}` : ""}`;
      cancel.hidden = !ACTIVE.has(job.status);
      const verdict = job.aifab && job.aifab.gate;
      gate.textContent = `Evaluation gate: ${verdict ? gateText(verdict) : ACTIVE.has(job.status) ? "after training" : "none recorded"}`;
      gate.className = verdict ? (verdict.passed ? "ok" : "bad") : "";
      if (ACTIVE.has(job.status)) return false;
      await drawJobs();
      return true;
    }, 2000);
    stops.add(stop);
  }

  view.append(h("h1", {}, "Fine-tuning"), h("h2", {}, "Datasets"), datasets, h("h2", {}, "Jobs"), jobs, detail);
  const [, list] = await Promise.all([attempt(drawDatasets), attempt(drawJobs)]); // one failing part leaves the other
  if (list && list.length) show(list[0].id);
  return () => { openJob = null; stops.forEach((stop) => stop()); };
}
