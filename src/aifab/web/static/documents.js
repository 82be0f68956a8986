// Documents: collections, uploads with live ingest progress, documents, versions and promotion, and a
// retrieval playground that shows how each passage was ranked.

import { api } from "./api.js";
import { attempt, bytes, field, h, poll, showError, table, when } from "./ui.js";

const FINAL = new Set(["succeeded", "failed", "partial", "interrupted", "cancelled"]);
const enc = encodeURIComponent;

export async function render(view) {
  const stops = new Set();
  let selected = null;
  const collections = h("div");
  const detail = h("div");
  const jobs = h("ul", { class: "jobs", "aria-label": "Uploads" }); // kept across redraws: uploads being followed
  const name = h("input", { name: "collection", required: true, pattern: "[A-Za-z0-9][A-Za-z0-9_.-]*", autocomplete: "off" });
  const create = h("form", { class: "row wrap", "aria-label": "New collection" }, field("New collection", name),
    h("button", { type: "submit" }, "Create"));
  create.addEventListener("submit", (event) => {
    event.preventDefault();
    attempt(async () => {
      await api("/v1/collections", { body: { name: name.value.trim() } });
      selected = name.value.trim();
      name.value = "";
      await refresh();
    });
  });

  async function refresh() {
    const list = (await api("/v1/collections")).data;
    if (!selected && list.length) selected = list[0].id;
    collections.replaceChildren(table(["Collection", "Live version", "Documents", "Chunks", ""], list.map((c) =>
      h("tr", { class: c.id === selected ? "active" : "" },
        h("td", {}, h("button", { type: "button", class: "link", "aria-pressed": String(c.id === selected),
          onclick: () => { selected = c.id; refresh(); } }, c.id)),
        h("td", {}, c.live_version ?? "—"), h("td", {}, c.documents), h("td", {}, c.chunks),
        h("td", {}, h("button", { type: "button", class: "danger", "aria-label": `Delete collection ${c.id}`,
          onclick: () => confirm(`Delete the collection '${c.id}' and all its documents?`) && attempt(async () => {
            await api(`/v1/collections/${enc(c.id)}`, { method: "DELETE" });
            if (selected === c.id) selected = null;
            await refresh();
          }) }, "Delete"))))));
    const current = list.find((c) => c.id === selected);
    detail.replaceChildren(current ? collectionView(current, refresh, stops, jobs) : h("p", { class: "muted" },
      "No collection yet: create one, then upload files into it."));
  }

  view.append(h("h1", {}, "Documents"), create, collections, detail);
  await refresh();
  return () => stops.forEach((stop) => stop());
}

function collectionView(c, refresh, stops, jobs) {
  const docs = h("div");
  const files = h("input", { type: "file", multiple: true, name: "file" });
  const drop = h("div", { class: "drop", "aria-hidden": "true" }, "Drop files here to upload them");

  function upload(list) {
    if (!list.length) return;
    const form = new FormData();
    for (const f of list) form.append("file", f, f.name);
    const line = h("li", {}, h("span", {}, `${c.id}: uploading ${[...list].map((f) => f.name).join(", ")}…`));
    jobs.prepend(line);
    attempt(async () => {
      const job = await api(`/v1/collections/${enc(c.id)}/documents`, { form });
      follow(job, line);
    }).then(() => { files.value = ""; });
  }

  function follow(job, line) {
    const bar = h("progress", { max: 1, value: 0, "aria-label": `Ingest of ${job.id}` });
    const text = h("span", { class: "status", role: "status" });
    line.replaceChildren(h("span", {}, `${c.id}: `), bar, text);
    line.dataset.job = job.id;
    const stop = poll(async () => {
      const j = await api(`/v1/ingest/jobs/${enc(job.id)}`);
      bar.max = Math.max(1, j.files_total);
      bar.value = j.files_done;
      text.textContent = `${j.status}: ${j.files_done}/${j.files_total} files`;
      line.dataset.status = j.status;
      if (!FINAL.has(j.status)) return false;
      const s = j.summary || {};
      const problems = [...(s.errors || []).map((e) => `${e.path}: ${e.reason}`), ...(s.error ? [s.error] : [])];
      if (problems.length) {
        text.textContent += ` — ${problems.join("; ")}`;
        showError(new Error(`Upload ${j.status}: ${problems.join("; ")}`));
      } else {
        text.textContent += ` — ${s.documents_added ?? 0} added, ${s.documents_updated ?? 0} updated, ${s.chunks_added ?? 0} chunks`;
      }
      stops.delete(stop);
      await refresh();
      return true;
    }, 400);
    stops.add(stop);
  }

  files.addEventListener("change", () => upload(files.files));
  const zone = h("section", { class: "upload", "aria-label": "Upload" }, drop,
    field(`Upload files into ${c.id}`, files), jobs);
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    upload(event.dataTransfer.files);
  });

  attempt(async () => {
    const list = c.live_version ? (await api(`/v1/collections/${enc(c.id)}/documents`)).data : [];
    docs.replaceChildren(table(["Source", "Format", "Chunks", "Size", "Updated", ""], list.map((d) => h("tr", {},
      h("td", {}, d.title && d.title !== d.source ? `${d.source} — ${d.title}` : d.source),
      h("td", {}, d.format), h("td", {}, d.chunks), h("td", {}, bytes(d.size_bytes)), h("td", {}, when(d.updated_at)),
      h("td", {}, h("button", { type: "button", class: "danger", "aria-label": `Delete document ${d.source}`,
        onclick: () => attempt(async () => {
          await api(`/v1/collections/${enc(c.id)}/documents/${enc(d.id)}`, { method: "DELETE" });
          await refresh();
        }) }, "Delete")))), "Documents of the live version"));
  });

  const versions = table(["Version", "Documents", "Chunks", "Created", "Promoted", ""], c.versions.map((v) => h("tr", {},
    h("td", {}, `v${v.version}${v.live ? " (live)" : ""}`), h("td", {}, v.documents), h("td", {}, v.chunks),
    h("td", {}, when(v.created_at)), h("td", {}, when(v.promoted_at)),
    h("td", {}, v.live ? "" : h("button", { type: "button", "aria-label": `Promote version ${v.version}`,
      onclick: () => attempt(async () => {
        await api(`/v1/collections/${enc(c.id)}/promote?version=${v.version}`, { method: "POST" });
        await refresh();
      }) }, "Promote")))), "Versions");

  return h("div", {}, h("h2", {}, c.id), zone, docs, versions, playground(c.id));
}

function playground(collection) {
  const query = h("input", { type: "search", name: "query", required: true });
  const mode = h("select", { name: "mode" }, ["hybrid", "dense", "lexical"].map((m) => h("option", { value: m }, m)));
  const topK = h("input", { type: "number", name: "top_k", min: 1, max: 100, value: 5 });
  const results = h("ol", { class: "hits" });
  const form = h("form", { class: "row wrap", "aria-label": "Retrieval playground" },
    field("Query", query), field("Mode", mode), field("Top k", topK), h("button", { type: "submit" }, "Search"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    attempt(async () => {
      const r = await api("/v1/retrieve", { body: { collection, query: query.value, mode: mode.value, top_k: Number(topK.value) } });
      results.replaceChildren(...r.data.map((p) => h("li", { class: "hit" },
        h("div", { class: "row wrap between" },
          h("strong", {}, [p.source, p.section && p.section.length ? ` › ${p.section.join(" › ")}` : "", p.page ? ` (page ${p.page})` : ""].join("")),
          h("span", { class: "muted" }, `fused ${p.score.toFixed(4)} · cosine ${p.similarity.toFixed(3)} · `,
            Object.entries(p.ranks).map(([k, v]) => `${k} #${v}`).join(", "))),
        h("p", {}, p.text))));
      if (!r.data.length) results.replaceChildren(h("li", { class: "muted" }, "no passage found"));
    });
  });
  return h("section", { "aria-label": "Retrieval playground" }, h("h2", {}, "Retrieval playground"), form, results);
}
