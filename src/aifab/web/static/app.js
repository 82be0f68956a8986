// The page's shell: who is calling (GET /v1/me, or the key prompt), the navigation and the hash router.
// Each page is its own module, loaded when first opened.

import { api, key } from "./api.js";
import { clearError, field, h, showError } from "./ui.js";

const PAGES = {
  chat: () => import("./chat.js"),
  documents: () => import("./documents.js"),
  models: () => import("./models.js"),
  finetune: () => import("./finetune.js"),
  evals: () => import("./evals.js"),
  keys: () => import("./keys.js"),
};
const ADMIN_ONLY = new Set(["models", "finetune", "evals", "keys"]);
const view = document.getElementById("view");
let ctx = null;
let cleanup = null;
let turns = 0;

async function identify() {
  try {
    const me = await api("/v1/me");
    return { ...me, admin: Boolean(me.admin || me.keyless) };
  } catch (err) {
    if (err.status === 404) return { keyless: true, admin: true, name: null }; // a server without /v1/me
    throw err;
  }
}

function keyPrompt(message) {
  const input = h("input", { type: "password", name: "key", autocomplete: "off", required: true, spellcheck: "false" });
  const form = h("form", { class: "card narrow", "aria-labelledby": "key-title" },
    h("h1", { id: "key-title" }, "Sign in"),
    h("p", {}, message),
    field("API key", input),
    h("button", { type: "submit" }, "Sign in"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    key.set(input.value.trim());
    await start();
  });
  view.replaceChildren(form);
  input.focus();
}

async function start() {
  clearError();
  try {
    ctx = await identify();
  } catch (err) {
    if (err.status === 401) {
      const had = key.get();
      key.clear();
      keyPrompt(had ? `That key was not accepted: ${err.message}` : "This server needs an API key.");
      if (had) showError(err);
      return;
    }
    showError(err);
    view.replaceChildren(h("p", {}, "The server could not be reached. ",
      h("button", { type: "button", onclick: start }, "Try again")));
    return;
  }
  document.getElementById("who").textContent = ctx.keyless ? "open (no keys)" : `${ctx.name || "key"}${ctx.admin ? " · admin" : ""}`;
  document.getElementById("signout").hidden = !key.get();
  for (const link of document.querySelectorAll("nav [data-admin]")) link.hidden = !ctx.admin;
  await route();
}

async function route() {
  if (!ctx) return;
  let name = (location.hash.match(/^#\/(\w+)/) || [])[1] || "chat";
  if (!PAGES[name] || (ADMIN_ONLY.has(name) && !ctx.admin)) name = "chat";
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.page === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (cleanup) cleanup();
  cleanup = null;
  clearError();
  const turn = ++turns; // a page still loading when the next is opened draws into a box no longer shown
  try {
    const page = await PAGES[name]();
    if (turn !== turns) return;
    const box = h("div");
    view.replaceChildren(box);
    const done = (await page.render(box, ctx)) || null;
    if (turn !== turns) {
      if (done) done();
      return;
    }
    cleanup = done;
    document.title = `aifab · ${name}`;
  } catch (err) {
    if (turn === turns) showError(err);
  }
}

document.getElementById("signout").addEventListener("click", () => {
  key.clear();
  location.hash = "#/chat";
  location.reload();
});
window.addEventListener("hashchange", route);
start();
