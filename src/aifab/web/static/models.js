// Models (admin): the registry, loading a model, a model's lineage and evaluation gate, and rollouts
// (canary, full promotion, rollback) of the names clients call.

import { api } from "./api.js";
import { attempt, bytes, field, h, table, when } from "./ui.js";

const enc = encodeURIComponent;

export function gateText(gate) {
  if (!gate) return "no gate recorded";
  return `${gate.passed ? "passed" : "failed"}${gate.reason ? `: ${gate.reason}` : ""}`;
}

export async function render(view) {
  const registry = h("div");
  const lineage = h("section", { "aria-label": "Lineage", class: "lineage" });
  const rollouts = h("div");
  const candidate = h("select", { name: "candidate" });
  const served = h("input", { name: "as", placeholder: "its base", autocomplete: "off" });
  const percent = h("input", { type: "number", name: "canary", min: 1, max: 99, value: 10 });
  const mode = h("select", { name: "mode" }, h("option", { value: "canary" }, "canary"), h("option", { value: "full" }, "full"));
  const force = h("input", { type: "checkbox", name: "force" });
  const promote = h("form", { class: "row wrap", "aria-label": "Promote a model" },
    field("Model", candidate), field("Served as", served), field("Rollout", mode), field("Canary %", percent),
    h("label", { class: "check" }, force, " even if its gate failed"), h("button", { type: "submit" }, "Promote"));
  mode.addEventListener("change", () => { percent.disabled = mode.value === "full"; });
  promote.addEventListener("submit", (event) => {
    event.preventDefault();
    attempt(async () => {
      const body = { name: candidate.value, force: force.checked };
      if (served.value.trim()) body.as = served.value.trim();
      if (mode.value === "full") body.full = true;
      else body.canary = Number(percent.value);
      await api("/v1/admin/rollouts", { body });
      await drawRollouts();
    });
  });

  async function drawRegistry() {
    const models = (await api("/v1/admin/models")).data;
    candidate.replaceChildren(...models.filter((m) => m.kind !== "embedding").map((m) => h("option", { value: m.name }, m.name)));
    const sized = models.some((m) => m.size_bytes !== undefined); // a registry that reports weight sizes
    registry.replaceChildren(table(["Model", "Kind", "Format", ...(sized ? ["Size"] : []), "Context", "Loaded", ""], models.map((m) => h("tr", {},
      h("td", {}, h("button", { type: "button", class: "link", onclick: () => attempt(() => showLineage(m.name)) }, m.name)),
      h("td", {}, m.kind), h("td", {}, m.format), sized ? h("td", {}, bytes(m.size_bytes)) : null,
      h("td", {}, m.context_length ?? ""), h("td", {}, m.loaded ? "yes" : "no"),
      h("td", {}, m.loaded ? "" : h("button", { type: "button", "aria-label": `Load ${m.name}`,
        onclick: (event) => attempt(async () => {
          event.target.disabled = true;
          event.target.textContent = "Loading…";
          try {
            await api(`/v1/models/${enc(m.name)}/load`, { method: "POST" });
          } finally {
            await drawRegistry();
          }
        }) }, "Load")))), "Registered models"));
  }

  async function showLineage(name) {
    const l = await api(`/v1/admin/models/${enc(name)}/lineage`);
    const info = l.lineage || {};
    const ds = l.dataset;
    lineage.replaceChildren(h("h2", {}, `Lineage of ${name}`), h("dl", {},
      h("dt", {}, "Base"), h("dd", {}, l.base || "—"),
      h("dt", {}, "Dataset"), h("dd", {}, ds ? (ds.ref || `${ds.name}@v${ds.version}`) : "—"),
      h("dt", {}, "Method"), h("dd", {}, info.method || "—"),
      h("dt", {}, "Gate"), h("dd", { class: info.gate ? (info.gate.passed ? "ok" : "bad") : "" }, gateText(info.gate)),
      h("dt", {}, "Interactions"), h("dd", {}, String((l.interactions || []).length))),
      (l.missing || []).length ? h("p", { class: "muted" }, l.missing.join("; ")) : null,
      h("details", {}, h("summary", {}, "Everything recorded"), h("pre", {}, JSON.stringify(l, null, 2))));
    lineage.scrollIntoView({ block: "nearest" });
  }

  async function drawRollouts() {
    const list = (await api("/v1/admin/rollouts")).data;
    rollouts.replaceChildren(table(["Served name", "Current", "Candidate", "Canary share", "Traffic (10 min)", ""], list.map((r) => h("tr", { dataset: { model: r.model } },
      h("td", {}, r.model), h("td", {}, r.current), h("td", {}, r.candidate || "—"),
      h("td", {}, r.candidate ? `${r.percent}%` : "—"),
      h("td", {}, Object.entries(r.traffic || {}).map(([v, n]) => `${v}: ${n}`).join(", ") || "—"),
      h("td", {}, r.candidate || r.previous ? h("button", { type: "button", class: "danger", "aria-label": `Roll back ${r.model}`,
        onclick: () => attempt(async () => {
          await api(`/v1/admin/rollouts/${enc(r.model)}/rollback`, { method: "POST" });
          await drawRollouts();
        }) }, "Roll back") : ""))), "Rollouts"));
  }

  view.append(h("h1", {}, "Models"), registry, lineage, h("h2", {}, "Rollouts"), promote, rollouts);
  await Promise.all([attempt(drawRegistry), attempt(drawRollouts)]); // one failing part leaves the other
}
