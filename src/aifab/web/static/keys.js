// Keys and usage (admin): list, create (the secret shown once), revoke; usage per key and over time.

import { api, key } from "./api.js";
import { barChart } from "./charts.js";
import { attempt, field, h, table, when } from "./ui.js";

const enc = encodeURIComponent;
const list = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);

export async function render(view) {
  const keys = h("div");
  const secret = h("div", { "aria-live": "polite" });
  const usage = h("div");
  const chart = h("div");
  const since = h("select", { name: "since" }, ["24h", "7d", "30d"].map((s) => h("option", { value: s }, s)));
  since.value = "7d";
  const name = h("input", { name: "name", required: true, autocomplete: "off" });
  const models = h("input", { name: "models", placeholder: "all", autocomplete: "off" });
  const collections = h("input", { name: "collections", placeholder: "all", autocomplete: "off" });
  const rpm = h("input", { type: "number", name: "rpm", min: 1 });
  const admin = h("input", { type: "checkbox", name: "admin" });
  const create = h("form", { class: "row wrap", "aria-label": "New key" },
    field("Name", name), field("Models (comma-separated)", models), field("Collections", collections),
    field("Requests/min", rpm), h("label", { class: "check" }, admin, " admin"), h("button", { type: "submit" }, "Create key"));
  create.addEventListener("submit", (event) => {
    event.preventDefault();
    attempt(async () => {
      const body = { name: name.value.trim(), admin: admin.checked };
      if (list(models.value).length) body.models = list(models.value);
      if (list(collections.value).length) body.collections = list(collections.value);
      if (rpm.value) body.rpm = Number(rpm.value);
      const k = await api("/v1/admin/keys", { body });
      // the first key ends keyless access, this tab's included: an admin key becomes this tab's key
      const adopt = k.first && !key.get() && k.admin;
      const locked = k.first && !key.get() && !k.admin;
      if (adopt) {
        key.set(k.key);
        document.getElementById("signout").hidden = false;
        document.getElementById("who").textContent = `${k.name} · admin`;
      }
      const value = h("code", { class: "secret" }, k.key);
      const copied = h("span", { role: "status", class: "muted" });
      secret.replaceChildren(h("div", { class: "card notice" },
        h("p", {}, `The key for '${k.name}' is shown this once: copy it now.`
          + (k.first ? " It is the server's first key: from now on every call needs a key." : "")
          + (adopt ? " This tab now signs in with it." : "")),
        h("div", { class: "row wrap" }, value, h("button", { type: "button", onclick: () => attempt(async () => {
          await navigator.clipboard.writeText(k.key);
          copied.textContent = "copied";
        }) }, "Copy"), copied)));
      create.reset();
      if (locked) {
        keys.replaceChildren(h("button", { type: "button", onclick: () => location.reload() }, "Sign in with an admin key"));
        return;
      }
      await drawKeys();
    });
  });

  async function drawKeys() {
    const all = (await api("/v1/admin/keys?all=true")).data;
    keys.replaceChildren(table(["Name", "Prefix", "Models", "Collections", "Limits", "Admin", "Created", ""], all.map((k) => h("tr", {
      class: k.revoked_at ? "revoked" : "", dataset: { key: k.name } },
    h("td", {}, k.name), h("td", {}, h("code", {}, k.prefix || "")), h("td", {}, (k.models || []).join(", ") || "all"),
    h("td", {}, (k.collections || []).join(", ") || "all"),
    h("td", {}, [k.rpm ? `${k.rpm} req/min` : "", k.tpm ? `${k.tpm} tok/min` : "", k.budget_tokens ? `budget ${k.budget_tokens}` : ""].filter(Boolean).join(", ") || "—"),
    h("td", {}, k.admin ? "yes" : ""), h("td", {}, when(k.created_at)),
    h("td", {}, k.revoked_at ? `revoked ${when(k.revoked_at)}` : h("button", { type: "button", class: "danger",
      "aria-label": `Revoke ${k.name}`, onclick: () => confirm(`Revoke the key '${k.name}'? Clients using it stop working.`) && attempt(async () => {
        await api(`/v1/admin/keys/${enc(k.id || k.name)}`, { method: "DELETE" });
        await drawKeys();
      }) }, "Revoke")))), "API keys"));
  }

  async function drawUsage() {
    const [report, series] = await Promise.all([api(`/v1/usage?since=${since.value}`),
      api(`/v1/admin/usage/series?since=${since.value}&bucket=${since.value === "24h" ? "1h" : "1d"}`)]);
    usage.replaceChildren(table(["Key", "Requests", "Prompt tokens", "Completion tokens", "Errors"], (report.keys || []).map((u) => h("tr", {},
      h("td", {}, `${u.key ?? "(no key)"}${u.revoked ? " (revoked)" : ""}`), h("td", {}, u.requests),
      h("td", {}, u.prompt_tokens), h("td", {}, u.completion_tokens),
      h("td", {}, u.errors ? (u.errors["4xx"] || 0) + (u.errors["5xx"] || 0) : 0))), `Usage per key, last ${since.value}`));
    const byTime = new Map();
    for (const p of series.data) byTime.set(p.t, (byTime.get(p.t) || 0) + p.requests);
    const bars = [...byTime.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([t, n]) => {
      const d = new Date(t);
      const label = since.value === "24h" ? `${d.getHours()}:00` : `${d.getMonth() + 1}/${d.getDate()}`;
      return { label, value: n, title: `${d.toLocaleString()}: ${n} requests` };
    });
    chart.replaceChildren(bars.length ? barChart(bars, `Requests over the last ${since.value}`) : h("p", { class: "muted" }, "No requests in this window."));
  }
  since.addEventListener("change", () => attempt(drawUsage));

  view.append(h("h1", {}, "Keys and usage"), create, secret, keys,
    h("h2", {}, "Usage"), field("Window", since), chart, usage);
  await Promise.all([attempt(drawKeys), attempt(drawUsage)]); // one failing part leaves the other
}
