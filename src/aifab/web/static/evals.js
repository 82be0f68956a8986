// Evals (admin): the stored runs of eval suites (`aifab eval run SUITE.toml`), each run's verdicts, and
// a run compared with an earlier run of its suite, metric by metric.

import { api } from "./api.js";
import { attempt, field, h, table, when } from "./ui.js";

const number = (v) => (v === null || v === undefined ? "—" : Number(v).toFixed(3));

function limit(v) {
  if (v.threshold === null || v.threshold === undefined) return "—";
  return `${v.lower_is_better ? "≤" : "≥"} ${v.threshold}`;
}

function change(now, before) {
  if (now === null || now === undefined || before === undefined) return "—";
  const d = now - before;
  return `${d >= 0 ? "+" : ""}${d.toFixed(3)}`;
}

export async function render(view) {
  const runs = (await api("/v1/admin/evals?limit=200")).data;
  const detail = h("section", { "aria-label": "Run", class: "run" });
  const status = h("p", { role: "status" });

  function show(run) {
    const earlier = runs.filter((r) => r.suite === run.suite && r.started_at < run.started_at);
    const other = h("select", {}, h("option", { value: "" }, "none"),
      earlier.map((r) => h("option", { value: r.id }, `${when(r.started_at)} · ${r.passed ? "passed" : "failed"}`)));
    const rows = h("div");
    const draw = () => {
      const base = runs.find((r) => r.id === other.value);
      const headers = ["Check", "Metric", "Value", "Limit", "Verdict", ...(base ? ["Earlier run", "Change"] : [])];
      rows.replaceChildren(table(headers, run.verdicts.map((v) => {
        const before = base && base.metrics[v.check] ? base.metrics[v.check][v.metric] : undefined;
        return h("tr", { class: v.verdict },
          h("td", {}, v.check), h("td", {}, v.metric), h("td", {}, number(v.value)), h("td", {}, limit(v)),
          h("td", {}, v.message ? `${v.verdict}: ${v.message}` : v.verdict),
          ...(base ? [h("td", {}, number(before)), h("td", {}, change(v.value, before))] : []));
      }), `Verdicts of run ${run.id}`));
    };
    other.addEventListener("change", draw);
    if (earlier.length) other.value = earlier[0].id; // the run before it, by default
    const again = h("button", { type: "button", onclick: () => attempt(async () => {
      again.disabled = true;
      status.textContent = `Running ${run.suite} again…`;
      try {
        await api(`/v1/admin/evals/${encodeURIComponent(run.id)}/rerun`, { method: "POST" });
        status.textContent = "";
        await render(view);
      } finally {
        again.disabled = false;
        if (status.textContent.startsWith("Running")) status.textContent = "";
      }
    }) }, "Run again");
    detail.replaceChildren(h("h2", {}, `${run.suite}: ${run.passed ? "passed" : "failed"}`),
      h("p", { class: "muted" }, `${when(run.started_at)}; suite file sha256 ${String(run.hashes.suite || "").slice(0, 12)}`),
      again, status, field("Compare with", other), rows);
    draw();
  }

  view.replaceChildren(h("h1", {}, "Evals"),
    h("p", { class: "muted" }, "Runs of eval suites, newest first. Run one with `aifab eval run SUITE.toml --gate`."),
    table(["Suite", "Run", "Started", "Result", "Failed metrics"], runs.map((r) => h("tr", {},
      h("td", {}, r.suite),
      h("td", {}, h("button", { type: "button", class: "link", onclick: () => show(r) }, r.id)),
      h("td", {}, when(r.started_at)), h("td", {}, r.passed ? "passed" : "failed"),
      h("td", {}, String(r.verdicts.filter((v) => v.verdict === "fail" || v.verdict === "error").length)))), "Eval runs"),
    detail);
  if (runs.length) show(runs[0]);
}
